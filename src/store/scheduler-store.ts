import type { JobErrorCode } from '../contract/generated.js'
import type { ExportJob } from './exports-store.js'

/** What a finished worker wrote. */
interface Completion {
  total: number
  fileName: string
  bytes: number
  sha256: string
  nextCursor: string | null
  /** Objects of the collection after this page, when known. */
  remaining: number | null
  finishedAt: number
  expiresAt: number
}

/**
 * The queue of export jobs and the record of their runs. These writes happen in the
 * background, never inside a request: they do not wait for a database another process
 * has locked, they fail at once, and the scheduler tries again later. Only the recovery
 * at start-up waits, as a request would.
 */
export interface SchedulerStore {
  /** Marks the oldest Pending job InProgress (one more attempt) and returns it. */
  claimNextPendingJob: (now: number) => Promise<ExportJob | undefined>
  /** Records how many objects the running job will write and has written (never less than before). */
  updateJobProgress: (id: string, progress: { expected?: number, processed?: number }) => Promise<void>
  /** False when the job is no longer InProgress (cancelled meanwhile). */
  markJobCompleted: (id: string, completion: Completion) => Promise<boolean>
  /** Fails a Pending or InProgress job; false when it had already finished. */
  markJobFailed: (id: string, code: JobErrorCode, message: string, now: number) => Promise<boolean>
  /** Puts an InProgress job back in the queue (its attempt counted). */
  markJobPending: (id: string) => Promise<void>
  /** Puts an InProgress job back in the queue without counting the attempt (a stop, not a fault). */
  markJobPendingRefunded: (id: string) => Promise<void>
  /**
   * After a stop or crash: fails the InProgress jobs that have had `maxAttempts` attempts,
   * with `message`, and puts the other InProgress jobs back in the queue.
   */
  requeueInterruptedJobs: (maxAttempts: number, message: string, now: number) => Promise<{ failed: number, requeued: number }>
}
