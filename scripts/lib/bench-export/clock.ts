import { performance } from 'node:perf_hooks'

/**
 * Epoch milliseconds with sub-millisecond resolution, comparable across the benchmark's
 * processes: the probe client sorts its samples into the chain client's job windows.
 */
export function nowMs (): number {
  return performance.timeOrigin + performance.now()
}
