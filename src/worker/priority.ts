import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'

/**
 * The niceness of a worker thread: below the event loop's, so that when exports and
 * imports keep every core busy the scheduler still runs the thread that answers HTTP
 * first (status p99 while two exports ran went from ~20 ms to a few ms on 2 cores).
 * Throughput of the workers is unchanged while a core is free.
 */
const WORKER_NICENESS = 10

/**
 * Lowers the calling thread's CPU priority (Linux: setpriority on the thread's own id,
 * which /proc/thread-self names). Elsewhere, or where it is not allowed, nothing changes:
 * it is an optimisation, never a reason to fail.
 */
export function lowerThreadPriority (niceness = WORKER_NICENESS): boolean {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (!Number.isInteger(tid) || tid <= 0) return false
    setPriority(tid, niceness)
    return true
  } catch {
    return false
  }
}
