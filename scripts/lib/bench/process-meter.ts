/**
 * The memory of another process (the server: all its threads), read from /proc (Linux):
 * sampled RSS, the kernel's high-water mark, and a reset of that mark between phases.
 */
import { readFileSync, writeFileSync } from 'node:fs'

function statusField (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : Number.NaN
}

/** Samples the RSS of `pid` every `everyMs` and keeps the peak of each named phase. */
export function rssMeter (pid: number, everyMs = 100) {
  const peaks = new Map<string, number>()
  let phase = ''
  const sample = (): void => {
    try {
      const rss = statusField(pid, 'VmRSS')
      if (phase) peaks.set(phase, Math.max(peaks.get(phase) ?? 0, rss))
    } catch {}
  }
  const timer = setInterval(sample, everyMs)
  timer.unref()
  return {
    /** Starts a phase; its peak also counts the kernel's high-water mark, reset here when the kernel allows. */
    phase (name: string): void {
      sample()
      phase = name
      try { writeFileSync(`/proc/${pid}/clear_refs`, '5') } catch {}
      sample()
    },
    /** Ends the phase: the peak of its samples, or the high-water mark when higher (it saw what 100 ms samples miss). */
    end (): number {
      sample()
      let hwm = Number.NaN
      try { hwm = statusField(pid, 'VmHWM') } catch {}
      const peak = Math.max(peaks.get(phase) ?? 0, Number.isFinite(hwm) ? hwm : 0)
      peaks.set(phase, peak)
      phase = ''
      return peak
    },
    /** The peak over the process's whole life (the kernel's mark since the last reset, and every phase's). */
    peaks: () => new Map(peaks),
    stop: () => clearInterval(timer),
  }
}
