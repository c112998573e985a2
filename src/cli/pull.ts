import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, open, rm, stat, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createBulkExportClient } from '../client/index.js'
import { progressView } from './progress.js'
import { lockDir } from './lock.js'
import { newState, readState, writeState, type PullState } from './state.js'

export interface PullOptions {
  url: string
  token: string
  firmId: string
  objectType: string
  out: string
  merge: boolean
  /** Start from this cursor instead of the beginning (a new pull only). */
  cursor?: string
  /** When the pull in `out` is complete, start a new one (a nightly run); an unfinished one is resumed. */
  refresh: boolean
  signal: AbortSignal
  log: NodeJS.WriteStream
}

/** A mistake in how the command was called: exit code 2. */
export class UsageError extends Error {}

const pageFile = (index: number): string => `page-${String(index).padStart(5, '0')}.ndjson`

/** Whether the first `bytes` of the merged file are the pages the state says (per page SHA-256). */
async function mergedIntact (path: string, state: PullState): Promise<boolean> {
  if ((await stat(path).then((s) => s.size, () => -1)) < state.mergedBytes) return false
  let start = 0
  for (const page of state.pages) {
    if (page.bytes === 0) continue
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(path, { start, end: start + page.bytes - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) hash.update(chunk)
    if (hash.digest('hex') !== page.sha256) return false
    start += page.bytes
  }
  return true
}

/** The pull already recorded in `out` (checked against this one and its files), or a new one. */
async function begin (opts: PullOptions): Promise<PullState> {
  const fresh = (): PullState => newState({ url: opts.url, firmId: opts.firmId, objectType: opts.objectType, merge: opts.merge }, opts.cursor ?? null)
  const state = await readState(opts.out)
  if (!state) return fresh()
  const same = state.url === opts.url && state.firmId === opts.firmId && state.objectType === opts.objectType && state.merge === opts.merge
  if (!same) {
    throw new UsageError(`${opts.out} holds a pull of ${state.firmId}/${state.objectType} from ${state.url}${state.merge ? ' with --merge' : ' without --merge'}; use another --out`)
  }
  if (state.done && opts.refresh) {
    // A new pull replaces the finished one's files.
    for (const page of state.pages) if (page.file) await rm(join(opts.out, page.file), { force: true })
    return fresh()
  }
  if (opts.cursor !== undefined && !state.done) {
    throw new UsageError(`${opts.out} holds an unfinished pull; run without --cursor to resume it, or use another --out`)
  }
  if (state.done) return state
  for (const page of state.pages) {
    if (!page.file) continue
    const size = await stat(join(opts.out, page.file)).then((s) => s.size, () => -1)
    if (size !== page.bytes) throw new Error(`${page.file} is missing or changed since it was pulled; remove ${opts.out} (or its .bulk-export-state.json) to pull again`)
  }
  if (state.merge && !await mergedIntact(join(opts.out, `${state.objectType}.ndjson`), state)) {
    throw new Error(`${state.objectType}.ndjson is missing or changed since its pages were pulled; remove ${opts.out} to pull again`)
  }
  return state
}

/**
 * Pulls a collection into a directory: one verified file per page (or, with --merge, one
 * file of them all), its state written after every page, so that running the same
 * command again goes on where it stopped without fetching a finished page twice.
 */
export async function pull (opts: PullOptions): Promise<PullState> {
  await mkdir(opts.out, { recursive: true })
  // A pull that loses its lock stops at once (its files would mix with another's).
  const lost = new AbortController()
  const unlock = await lockDir(opts.out, { onWait: (message) => opts.log.write(message), onLost: (err) => lost.abort(err), signal: opts.signal })
  try {
    return await pullLocked({ ...opts, signal: AbortSignal.any([opts.signal, lost.signal]) })
  } catch (err) {
    throw lost.signal.aborted ? lost.signal.reason : err
  } finally {
    await unlock()
  }
}

async function pullLocked (opts: PullOptions): Promise<PullState> {
  const state = await begin(opts)
  if (state.done) {
    opts.log.write(`${opts.out}: the pull of ${state.firmId}/${state.objectType} is complete (${state.objects} objects in ${state.pages.length} pages); --refresh pulls it again\n`)
    return state
  }
  await writeState(opts.out, state)
  const merged = join(opts.out, `${opts.objectType}.ndjson`)
  const partsDir = opts.merge ? join(opts.out, '.pages') : opts.out
  if (opts.merge) {
    await mkdir(partsDir, { recursive: true })
    // Whatever a stop left after the last whole page is cut off.
    const file = await open(merged, 'a')
    await file.close()
    await truncate(merged, state.mergedBytes)
  }
  const view = progressView(opts.log, state.objects)
  const client = createBulkExportClient({ baseUrl: opts.url, token: opts.token })
  try {
    const pages = client.exportPages({
      firmId: opts.firmId,
      objectType: opts.objectType,
      cursor: state.next,
      dir: partsDir,
      pageName: pageFile,
      firstIndex: state.pages.length + 1,
      runId: state.runId,
      signal: opts.signal,
      onProgress: (p) => view.update({ ...p, done: state.objects }),
    })
    for await (const page of pages) {
      let file: string | undefined = pageFile(page.index)
      if (opts.merge) {
        await pipeline(createReadStream(page.path), createWriteStream(merged, { flags: 'a' }))
        const out = await open(merged, 'r+')
        try { await out.sync() } finally { await out.close() }
        await rm(page.path, { force: true })
        state.mergedBytes += page.bytes
        file = undefined
      }
      state.pages.push({ index: page.index, requestId: page.requestId, cursor: page.cursor, file, total: page.total, bytes: page.bytes, sha256: page.sha256 })
      state.objects += page.total
      state.next = page.nextCursor
      state.done = page.nextCursor === null
      await writeState(opts.out, state)
      view.page(`page ${page.index}: ${page.total} objects, sha256 verified${page.remaining === undefined ? '' : `, about ${page.remaining} to go`} (${page.requestId})`)
    }
  } finally {
    view.stop()
  }
  if (opts.merge) await rm(partsDir, { recursive: true, force: true })
  opts.log.write(`pulled ${state.objects} objects of ${state.firmId}/${state.objectType} into ${opts.merge ? merged : opts.out} (${state.pages.length} pages)\n`)
  return state
}
