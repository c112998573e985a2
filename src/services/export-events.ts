import type { ExportJob } from '../store/exports-store.js'
import type { Store } from '../store/store.js'

/** Progress wakes a waiter only after this long, so a long-poll is not a busy poll. */
const PROGRESS_WAKE_MS = 1000
/** …and only once the job has written this share of its page (or this many objects, total unknown). */
const PROGRESS_WAKE_SHARE = 0.1
const PROGRESS_WAKE_OBJECTS = 5000

interface Waiter {
  seen: ExportJob
  since: number
  /** Answers the waiter: with the job as it changed, or (timeout, stop) undefined for a fresh read. */
  done: (job?: ExportJob) => void
}

function finished (job: ExportJob): boolean {
  return job.status === 'Completed' || job.status === 'Failed'
}

/** Whether `job` differs from what a waiter saw enough to answer it now. */
function meaningful (seen: ExportJob, job: ExportJob, waitedMs: number): boolean {
  if (job.status !== seen.status) return true
  if (waitedMs < PROGRESS_WAKE_MS) return false
  const step = job.total ? Math.max(1, Math.ceil(job.total * PROGRESS_WAKE_SHARE)) : PROGRESS_WAKE_OBJECTS
  return job.processed - seen.processed >= step
}

/**
 * Long-polls on export jobs. Whoever writes a job row calls `changed(id)`; when a request
 * waits on that job, its row is read once and every waiter whose view it changes
 * meaningfully is answered, so a thousand waiters cost one read per change, and nothing
 * is read for jobs nobody waits on.
 */
export function createExportEvents (deps: { store: Store, now?: () => number }) {
  const { store } = deps
  const now = deps.now ?? Date.now
  const waiters = new Map<string, Set<Waiter>>()
  /** Jobs whose row is being read for their waiters, and those that changed again meanwhile. */
  const reading = new Set<string>()
  const again = new Set<string>()
  /** Counts changes, so a waiter that read its job just before one can tell. */
  let epoch = 0
  let closed = false

  function remove (jobId: string, waiter: Waiter): void {
    const set = waiters.get(jobId)
    set?.delete(waiter)
    if (set?.size === 0) waiters.delete(jobId)
  }

  async function fanOut (jobId: string): Promise<void> {
    reading.add(jobId)
    try {
      do {
        again.delete(jobId)
        const job = await store.exports.selectJob(jobId)
        if (!job) continue
        for (const w of waiters.get(jobId) ?? []) {
          if (meaningful(w.seen, job, now() - w.since)) w.done(job)
        }
      } while (again.has(jobId) && waiters.has(jobId))
    } catch {
      // The database is busy: waiters are answered at their timeout with a fresh read.
    } finally {
      reading.delete(jobId)
      again.delete(jobId)
    }
  }

  /** A job's row changed (status, progress, file): wake whoever waits on it. */
  function changed (jobId: string): void {
    epoch++
    if (!waiters.has(jobId)) return
    if (reading.has(jobId)) again.add(jobId)
    else void fanOut(jobId)
  }

  return {
    changed,

    /** Marks the moment before a job is read, for `wait`. */
    mark: (): number => epoch,

    /**
     * Resolves with the job as soon as it changes meaningfully from `seen` (read after
     * `mark` returned `since`), or with a fresh read after `ms`, or when `signal` aborts
     * (the client left) or the server stops. A finished job resolves at once.
     */
    async wait (seen: ExportJob, since: number, ms: number, signal?: AbortSignal): Promise<ExportJob> {
      if (finished(seen) || closed || ms <= 0) return seen
      const job = await new Promise<ExportJob | undefined>((resolve) => {
        const waiter: Waiter = {
          seen,
          since: now(),
          done: (job) => {
            clearTimeout(timer)
            signal?.removeEventListener('abort', onAbort)
            remove(seen.id, waiter)
            resolve(job)
          },
        }
        const onAbort = (): void => waiter.done(seen)
        const timer = setTimeout(() => waiter.done(), ms)
        signal?.addEventListener('abort', onAbort, { once: true })
        let set = waiters.get(seen.id)
        if (!set) waiters.set(seen.id, set = new Set())
        set.add(waiter)
        // A change between the read of `seen` and now found no waiter: look again.
        if (epoch !== since) changed(seen.id)
      })
      return job ?? await store.exports.selectJob(seen.id) ?? seen
    },

    /** A stop has begun: every waiter is answered now, and new ones at once. */
    close (): void {
      closed = true
      for (const set of [...waiters.values()]) {
        for (const w of [...set]) w.done()
      }
    },

    /** How many requests are waiting (for tests and metrics). */
    waiting: (): number => [...waiters.values()].reduce((n, set) => n + set.size, 0),
  }
}

export type ExportEvents = ReturnType<typeof createExportEvents>
