/** What the benchmarks and the soak measure about processes and the machine. */
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'

/** CPU time used (all threads of the process) and main-thread event-loop utilisation. */
export interface Usage { cpuMs: number, wallMs: number, elu: number }

/** Measures CPU and event-loop utilisation of this process from now on. */
export function usageMeter (): () => Usage {
  const cpu0 = process.cpuUsage()
  const elu0 = performance.eventLoopUtilization()
  const t0 = performance.now()
  return () => {
    const cpu = process.cpuUsage(cpu0)
    const elu = performance.eventLoopUtilization(elu0)
    return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0, elu: elu.utilization }
  }
}

/** Busy cores of the whole machine (all processes) from now on, from /proc/stat (Linux); NaN elsewhere. */
export function machineMeter (): () => number {
  const read = (): { busy: number, total: number } | null => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
      const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
      return { busy: total - f[3] - f[4], total } // minus idle and iowait
    } catch {
      return null
    }
  }
  const a = read()
  return () => {
    const b = read()
    if (!a || !b || b.total === a.total) return Number.NaN
    return (b.busy - a.busy) / (b.total - a.total) * availableParallelism()
  }
}

/** Event-loop delay of this process while enabled, in milliseconds. */
export interface LoopDelayMeter {
  enable: () => void
  disable: () => void
  /** How many delays were recorded. */
  readonly count: number
  delays: () => { p50: number, p99: number, max: number }
}

/** An event-loop delay histogram sampled every `resolutionMs`. */
export function loopDelayMeter (resolutionMs = 10): LoopDelayMeter {
  const h = monitorEventLoopDelay({ resolution: resolutionMs })
  // The histogram measures the sampling timer itself; only what exceeds its period is delay.
  const delay = (ns: number): number => Math.max(0, ns / 1e6 - resolutionMs)
  return {
    enable: () => { h.enable() },
    disable: () => { h.disable() },
    get count () { return h.count },
    delays: () => ({ p50: delay(h.percentile(50)), p99: delay(h.percentile(99)), max: delay(h.max) }),
  }
}

/** Resident set size of another process (all its threads), from /proc (Linux); NaN elsewhere. */
export function processRss (pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : Number.NaN
  } catch {
    return Number.NaN
  }
}

/** CPU seconds used so far by another process (all its threads), from /proc (Linux); NaN elsewhere. */
export function processCpuSeconds (pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100 // utime + stime, in USER_HZ (100 on Linux)
  } catch {
    return Number.NaN
  }
}
