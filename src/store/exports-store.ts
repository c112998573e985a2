import type { Store } from './db.js'
import type { JobStatus } from './schema.js'

export interface JobRow {
  id: string
  userId: string
  firmId: string
  objectType: string
  status: JobStatus
  cursorIn: string | null
  afterId: string | null
  processed: number
  total: number | null
  nextCursor: string | null
  fileName: string | null
  bytes: number | null
  sha256: string | null
  errorCode: string | null
  errorMessage: string | null
  attempts: number
  idempotencyKey: string | null
  requestHash: string | null
  createdAt: number
  startedAt: number | null
  finishedAt: number | null
  expiresAt: number | null
}

const COLUMNS = `id, user_id AS userId, firm_id AS firmId, object_type AS objectType, status,
  cursor_in AS cursorIn, after_id AS afterId, processed, total, next_cursor AS nextCursor,
  file_name AS fileName, bytes, sha256, error_code AS errorCode, error_message AS errorMessage,
  attempts, idempotency_key AS idempotencyKey, request_hash AS requestHash, created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt,
  expires_at AS expiresAt`

/** Whether an error is the partial unique index refusing a second active job. */
export function isActiveJobConflict (err: unknown): boolean {
  const e = err as { code?: string, message?: string }
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' && String(e.message).includes('export_jobs.user_id')
}

/** Every query on `export_jobs`. Only the main thread writes job rows. */
export function createExportsStore ({ sqlite }: Store) {
  const insert = sqlite.prepare<[string, string, string, string, string | null, string | null, string | null, string | null, number]>(`
    INSERT INTO export_jobs (id, user_id, firm_id, object_type, status, cursor_in, after_id, idempotency_key, request_hash, created_at)
    VALUES (?, ?, ?, ?, 'Pending', ?, ?, ?, ?, ?)`)
  const byKey = sqlite.prepare<[string, string], JobRow>(
    `SELECT ${COLUMNS} FROM export_jobs WHERE user_id = ? AND idempotency_key = ?`)
  const clearKey = sqlite.prepare<[string]>('UPDATE export_jobs SET idempotency_key = NULL WHERE id = ?')
  const cancelled = sqlite.prepare<[number, string]>(`
    UPDATE export_jobs SET status = 'Failed', error_code = 'CANCELLED', error_message = 'the request was cancelled by its owner',
      finished_at = ? WHERE id = ? AND status IN ('Pending', 'InProgress')`)
  const fileRemoved = sqlite.prepare<[number, number, string]>(
    "UPDATE export_jobs SET file_name = NULL, expires_at = min(coalesce(expires_at, ?), ?) WHERE id = ? AND status = 'Completed'")
  const expiredFiles = sqlite.prepare<[number], { id: string, fileName: string }>(
    "SELECT id, file_name AS fileName FROM export_jobs WHERE status = 'Completed' AND file_name IS NOT NULL AND expires_at <= ?")
  const liveFiles = sqlite.prepare<[], string>(
    "SELECT file_name FROM export_jobs WHERE status = 'Completed' AND file_name IS NOT NULL").pluck(true)
  const interruptedTooOften = sqlite.prepare<[string, number, number]>(`
    UPDATE export_jobs SET status = 'Failed', error_code = 'EXPORT_FAILED', error_message = ?, finished_at = ?
    WHERE status = 'InProgress' AND attempts >= ?`)
  const requeueRefund = sqlite.prepare<[string]>(
    "UPDATE export_jobs SET status = 'Pending', attempts = max(0, attempts - 1) WHERE id = ? AND status = 'InProgress'")
  const byId = sqlite.prepare<[string], JobRow>(`SELECT ${COLUMNS} FROM export_jobs WHERE id = ?`)
  const activeOfUser = sqlite.prepare<[string], { id: string }>(
    "SELECT id FROM export_jobs WHERE user_id = ? AND status IN ('Pending', 'InProgress')")
  const claim = sqlite.prepare<[number], JobRow>(`
    UPDATE export_jobs SET status = 'InProgress', started_at = ?, attempts = attempts + 1
    WHERE id = (SELECT id FROM export_jobs WHERE status = 'Pending' ORDER BY created_at, rowid LIMIT 1)
    RETURNING ${COLUMNS}`)
  const progress = sqlite.prepare<[number, string]>(
    "UPDATE export_jobs SET processed = max(processed, ?) WHERE id = ? AND status = 'InProgress'")
  const expected = sqlite.prepare<[number, string]>(
    "UPDATE export_jobs SET total = ? WHERE id = ? AND status = 'InProgress'")
  const completed = sqlite.prepare<[number, number, string, number, string, string | null, number, number, string]>(`
    UPDATE export_jobs SET status = 'Completed', total = ?, processed = max(processed, ?), file_name = ?, bytes = ?,
      sha256 = ?, next_cursor = ?, finished_at = ?, expires_at = ?
    WHERE id = ? AND status = 'InProgress'`)
  const failed = sqlite.prepare<[string, string, number, string]>(`
    UPDATE export_jobs SET status = 'Failed', error_code = ?, error_message = ?, finished_at = ?
    WHERE id = ? AND status IN ('Pending', 'InProgress')`)
  const requeue = sqlite.prepare<[string]>(
    "UPDATE export_jobs SET status = 'Pending' WHERE id = ? AND status = 'InProgress'")
  const requeueAll = sqlite.prepare(
    "UPDATE export_jobs SET status = 'Pending' WHERE status = 'InProgress'")
  const pendingAhead = sqlite.prepare<[number], number>(
    "SELECT count(*) FROM export_jobs WHERE status = 'Pending' AND created_at < ?").pluck(true)

  /** Runs `fn` with no busy wait: a locked database throws SQLITE_BUSY at once. */
  function noWait<T> (fn: () => T): T {
    const timeout = sqlite.pragma('busy_timeout', { simple: true }) as number
    sqlite.pragma('busy_timeout = 0')
    try {
      return fn()
    } finally {
      sqlite.pragma(`busy_timeout = ${timeout}`)
    }
  }

  return {
    /**
     * Runs job-row writes that must not block the event loop in busy waits (progress, the
     * end of a job, the queue): they fail at once when the database is locked and are
     * retried by their caller without blocking.
     */
    noWait,
    /** Inserts a Pending job; the partial unique index throws if the user has an active one. */
    insertJob (job: { id: string, userId: string, firmId: string, objectType: string, cursorIn: string | null, afterId: string | null, idempotencyKey?: string | null, requestHash?: string | null, createdAt: number }): void {
      insert.run(job.id, job.userId, job.firmId, job.objectType, job.cursorIn, job.afterId, job.idempotencyKey ?? null, job.requestHash ?? null, job.createdAt)
    },
    selectJobByIdempotencyKey: (userId: string, key: string): JobRow | undefined => byKey.get(userId, key),
    clearIdempotencyKey: (id: string): void => { clearKey.run(id) },
    /** Fails a Pending or InProgress job as CANCELLED; false when it had already finished. */
    markJobCancelled: (id: string, now: number): boolean => cancelled.run(now, id).changes > 0,
    /** Records that a completed job's file is gone (expired or deleted early). */
    markJobFileRemoved: (id: string, now: number): void => { fileRemoved.run(now, now, id) },
    selectExpiredFiles: (now: number): Array<{ id: string, fileName: string }> => expiredFiles.all(now),
    selectLiveFileNames: (): Set<string> => new Set(liveFiles.all()),
    /** Puts a job a shutdown interrupted back in the queue without counting the attempt. */
    markJobPendingRefunded: (id: string): void => { requeueRefund.run(id) },
    selectJob: (id: string): JobRow | undefined => byId.get(id),
    selectActiveJobId: (userId: string): string | undefined => activeOfUser.get(userId)?.id,
    /** Marks the oldest Pending job InProgress and returns it. */
    claimNextPendingJob: (now: number): JobRow | undefined => claim.get(now),
    updateJobProgress: (id: string, processed: number): void => { progress.run(processed, id) },
    updateJobExpected: (id: string, total: number): void => { expected.run(total, id) },
    /** False when the job is no longer InProgress (cancelled meanwhile). */
    markJobCompleted (id: string, r: { total: number, fileName: string, bytes: number, sha256: string, nextCursor: string | null, finishedAt: number, expiresAt: number }): boolean {
      return completed.run(r.total, r.total, r.fileName, r.bytes, r.sha256, r.nextCursor, r.finishedAt, r.expiresAt, id).changes > 0
    },
    markJobFailed: (id: string, code: string, message: string, now: number): boolean =>
      failed.run(code, message, now, id).changes > 0,
    markJobPending: (id: string): void => { requeue.run(id) },
    /** Jobs a stop or crash interrupted go back to the queue. */
    requeueInterruptedJobs (maxAttempts: number, now: number): { failed: number, requeued: number } {
      const failed = interruptedTooOften.run(`the export was interrupted ${maxAttempts} times (server crashes or kills while it ran); start it again, and check the server log if it keeps failing`, now, maxAttempts).changes
      return { failed, requeued: requeueAll.run().changes }
    },
    countPendingBefore: (createdAt: number): number => pendingAhead.get(createdAt) ?? 0,
  }
}

export type ExportsStore = ReturnType<typeof createExportsStore>
