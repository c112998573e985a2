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
  createdAt: number
  startedAt: number | null
  finishedAt: number | null
  expiresAt: number | null
}

const COLUMNS = `id, user_id AS userId, firm_id AS firmId, object_type AS objectType, status,
  cursor_in AS cursorIn, after_id AS afterId, processed, total, next_cursor AS nextCursor,
  file_name AS fileName, bytes, sha256, error_code AS errorCode, error_message AS errorMessage,
  attempts, created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt,
  expires_at AS expiresAt`

/** Whether an error is the partial unique index refusing a second active job. */
export function isActiveJobConflict (err: unknown): boolean {
  const e = err as { code?: string, message?: string }
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' && String(e.message).includes('export_jobs.user_id')
}

/** Every query on `export_jobs`. Only the main thread writes job rows. */
export function createExportsStore ({ sqlite }: Store) {
  const insert = sqlite.prepare<[string, string, string, string, string | null, string | null, number]>(`
    INSERT INTO export_jobs (id, user_id, firm_id, object_type, status, cursor_in, after_id, created_at)
    VALUES (?, ?, ?, ?, 'Pending', ?, ?, ?)`)
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

  return {
    /** Inserts a Pending job; the partial unique index throws if the user has an active one. */
    insertJob (job: { id: string, userId: string, firmId: string, objectType: string, cursorIn: string | null, afterId: string | null, createdAt: number }): void {
      insert.run(job.id, job.userId, job.firmId, job.objectType, job.cursorIn, job.afterId, job.createdAt)
    },
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
    requeueInterruptedJobs: (): number => requeueAll.run().changes,
    countPendingBefore: (createdAt: number): number => pendingAhead.get(createdAt) ?? 0,
  }
}

export type ExportsStore = ReturnType<typeof createExportsStore>
