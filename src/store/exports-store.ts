import type { exportJobs } from './schema.js'

/** An export job as the database holds it. */
export type ExportJob = typeof exportJobs.$inferSelect

type NewExportJob = Pick<typeof exportJobs.$inferInsert,
  'id' | 'userId' | 'firmId' | 'objectType' | 'cursorIn' | 'afterId' | 'startOffset' | 'idempotencyKey' | 'requestHash' | 'createdAt'>

/** Which of a user's jobs a list shows. */
export interface JobFilter {
  statuses?: ExportJob['status'][]
  firmId?: string
  objectType?: string
}

/**
 * What refused an insert: the user already has a Pending or InProgress job, or already
 * used the Idempotency-Key. Both are unique indexes: the database holds the rule.
 */
export type InsertJobOutcome = 'inserted' | 'active-job-exists' | 'idempotency-key-exists'

/** Export jobs as their owners start, read and cancel them. */
export interface ExportsStore {
  /** Inserts a Pending job unless a unique index refuses it. */
  insertJob: (job: NewExportJob) => Promise<InsertJobOutcome>
  selectJob: (id: string) => Promise<ExportJob | undefined>
  /** The user's Pending or InProgress job. */
  selectActiveJobId: (userId: string) => Promise<string | undefined>
  selectJobByIdempotencyKey: (userId: string, key: string) => Promise<ExportJob | undefined>
  clearIdempotencyKey: (id: string) => Promise<void>
  /** Fails a Pending or InProgress job as CANCELLED; false when it had already finished. */
  markJobCancelled: (id: string, now: number) => Promise<boolean>
  /**
   * A user's jobs, newest first (created_at, then id, descending), that match the filter
   * and come after `after` in that order; at most `limit`.
   */
  selectJobsOfUser: (userId: string, filter: JobFilter, after: { createdAt: number, id: string } | undefined, limit: number) => Promise<ExportJob[]>
  /** How many Pending jobs the scheduler claims before this one (the queue ahead of it). */
  countPendingAhead: (jobId: string) => Promise<number>
}
