import type { ExportJob } from '../store/exports-store.js'
import type { Store } from '../store/store.js'

/** Progress wakes a waiter only after this long, so a long-poll is not a busy poll. */
const PROGRESS_WAKE_MS = 1000
/** …and only once the job has written this share of its page (or this many objects, total unknown). */
const PROGRESS_WAKE_SHARE = 0.1
const PROGRESS_WAKE_OBJECTS = 5000
/** The most requests one user may hold waiting at once; more are answered at once. */
const MAX_WAITS_PER_USER = 10
/** How many recent changes are remembered, for a waiter that read its job just before one. */
const RECENT_CHANGES = 10_000

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
  if (job.status !== seen.status || job.fileName !== seen.fileName) return true
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
  /** Waiting requests per user, to bound what one client can hold open. */
  const holding = new Map<string, number>()
  /** Jobs whose row is being read for their waiters, and those that changed again meanwhile. */
  const reading = new Set<string>()
  const again = new Set<string>()
  /** A counter of changes, and the count at each job's latest change (the most recent ones). */
  let epoch = 0
  const changedAt = new Map<string, number>()
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
    changedAt.delete(jobId)
    changedAt.set(jobId, ++epoch)
    if (changedAt.size > RECENT_CHANGES) changedAt.delete(changedAt.keys().next().value as string)
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
     * (the client left) or the server stops. `held` is false when it did not wait at all:
     * a finished job, a stop, or `holder` (the user) already holding MAX_WAITS_PER_USER.
     */
    async wait (seen: ExportJob, since: number, ms: number, opts: { holder: string, signal?: AbortSignal }): Promise<{ job: ExportJob, held: boolean }> {
      const { holder, signal } = opts
      if (finished(seen) || closed || ms <= 0 || signal?.aborted) return { job: seen, held: !closed && !signal?.aborted }
      if ((holding.get(holder) ?? 0) >= MAX_WAITS_PER_USER) return { job: seen, held: false }
      holding.set(holder, (holding.get(holder) ?? 0) + 1)
      const job = await new Promise<ExportJob | undefined>((resolve) => {
        const waiter: Waiter = {
          seen,
          since: now(),
          done: (job) => {
            clearTimeout(timer)
            signal?.removeEventListener('abort', onAbort)
            remove(seen.id, waiter)
            const left = (holding.get(holder) ?? 1) - 1
            if (left > 0) holding.set(holder, left)
            else holding.delete(holder)
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
        if ((changedAt.get(seen.id) ?? 0) > since) changed(seen.id)
      })
      return { job: job ?? await store.exports.selectJob(seen.id) ?? seen, held: true }
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
