import { MultiBar } from 'cli-progress'
import type { Progress } from '../client/index.js'

/** Shows a pull's progress: a live bar on a terminal, plain log lines otherwise. */
export interface ProgressView {
  update: (p: Progress) => void
  page: (line: string) => void
  stop: () => void
}

function eta (seconds: number): string {
  if (!Number.isFinite(seconds)) return '…'
  return seconds < 90 ? `${Math.ceil(seconds)} s` : `${Math.round(seconds / 60)} min`
}

/**
 * The bar counts objects of the whole collection (done, plus the page under way, out of
 * done + remaining when the server has said how many remain), with the rate and an ETA.
 */
export function progressView (out: NodeJS.WriteStream, startedWith: number): ProgressView {
  const started = Date.now()
  const rate = (objects: number): number => (objects - startedWith) / Math.max(0.001, (Date.now() - started) / 1000)
  if (!out.isTTY) {
    let lastLog = 0
    return {
      update: (p) => {
        if (Date.now() - lastLog < 5000) return
        lastLog = Date.now()
        out.write(`page ${p.page} ${p.status}: ${p.processed}${p.total === undefined ? '' : `/${p.total}`} objects; ${p.done} done\n`)
      },
      page: (line) => { out.write(`${line}\n`) },
      stop: () => {},
    }
  }
  const bars = new MultiBar({
    stream: out,
    format: 'pulling [{bar}] {value}/{total} objects | {rate}/s | ETA {eta_text} | page {page}',
    hideCursor: true,
    clearOnComplete: false,
  })
  const bar = bars.create(1, startedWith, { rate: 0, eta_text: '…', page: 1 })
  return {
    update: (p) => {
      const now = p.done + (p.status === 'InProgress' ? p.processed : 0)
      const total = p.remaining === null ? Math.max(now + (p.total ?? 0), 1) : p.done + p.remaining
      const r = rate(now)
      bar.setTotal(Math.max(total, now, 1))
      bar.update(now, { rate: Math.round(r), eta_text: eta((total - now) / r), page: p.page })
    },
    page: (line) => { bars.log(`${line}\n`) },
    stop: () => { bars.stop() },
  }
}
