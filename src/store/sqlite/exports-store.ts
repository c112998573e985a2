import type Database from 'better-sqlite3'
import { and, count, desc, eq, getTableColumns, inArray, lt, or, sql } from 'drizzle-orm'
import { alias } from 'drizzle-orm/sqlite-core'
import type { ExportJob, ExportsStore, InsertJobOutcome } from '../exports-store.js'
import { ACTIVE_STATUSES, exportJobs } from '../schema.js'
import { compile, driverError, type Db, type Run } from './connection.js'

const p = sql.placeholder

/**
 * A job by id as one plain better-sqlite3 statement: a status read is the most frequent
 * request, and Drizzle's row mapping cost about as much as the read itself. The columns
 * are plain text and integers, so a row's values are the job's fields, in schema order.
 */
function jobById (db: Db, sqlite: Database.Database): (id: string) => ExportJob | undefined {
  const columns = getTableColumns(exportJobs)
  // Selected in the order of these keys.
  const keys = Object.keys(columns) as Array<keyof ExportJob>
  const statement = compile<[string], unknown[]>(sqlite, db.select(columns).from(exportJobs).where(eq(exportJobs.id, p('id'))), ['id']).raw(true)
  return (id) => {
    const row = statement.get(id)
    if (row === undefined) return undefined
    const job: Record<string, unknown> = {}
    for (let i = 0; i < keys.length; i++) job[keys[i]] = row[i]
    return job as unknown as ExportJob
  }
}

/** Statements prepared once per connection. */
export function prepareExportsQueries (db: Db, sqlite: Database.Database) {
  const job = alias(exportJobs, 'job')
  return {
    byId: jobById(db, sqlite),
    // In the scheduler's own order (created_at, then rowid): jobs of the same millisecond too.
    pendingAhead: db.select({ n: count() }).from(exportJobs)
      .innerJoin(job, eq(job.id, p('id')))
      .where(and(eq(exportJobs.status, 'Pending'), or(lt(exportJobs.createdAt, job.createdAt),
        and(eq(exportJobs.createdAt, job.createdAt), sql`${exportJobs}.rowid < ${job}.rowid`)))).prepare(),
  }
}

/** Which unique index refused an insert, if one did. */
function refusedBy (err: unknown): InsertJobOutcome | undefined {
  const e = driverError(err)
  if (e.code !== 'SQLITE_CONSTRAINT_UNIQUE') return undefined
  // SQLite names the indexed columns: "UNIQUE constraint failed: export_jobs.user_id[, export_jobs.idempotency_key]".
  const message = String(e.message)
  if (message.includes('export_jobs.idempotency_key')) return 'idempotency-key-exists'
  if (message.includes('export_jobs.user_id')) return 'active-job-exists'
  return undefined
}

/** The exports store on SQLite; `run` decides when each call may touch the connection. */
export function createExportsStore (db: Db, q: ReturnType<typeof prepareExportsQueries>, run: Run): ExportsStore {
  return {
    insertJob: (job) => run(() => {
      try {
        db.insert(exportJobs).values({ ...job, status: 'Pending' }).run()
        return 'inserted'
      } catch (err) {
        const outcome = refusedBy(err)
        if (outcome === undefined) throw err
        return outcome
      }
    }),
    selectJob: (id) => run(() => q.byId(id)),
    selectActiveJobId: (userId) => run(() => db.select({ id: exportJobs.id }).from(exportJobs)
      .where(and(eq(exportJobs.userId, userId), inArray(exportJobs.status, ACTIVE_STATUSES))).get()?.id),
    selectJobByIdempotencyKey: (userId, key) => run(() => db.select().from(exportJobs)
      .where(and(eq(exportJobs.userId, userId), eq(exportJobs.idempotencyKey, key))).get()),
    clearIdempotencyKey: (id) => run(() => { db.update(exportJobs).set({ idempotencyKey: null }).where(eq(exportJobs.id, id)).run() }),
    markJobCancelled: (id, now) => run(() => db.update(exportJobs)
      .set({ status: 'Failed', errorCode: 'CANCELLED', errorMessage: 'the request was cancelled by its owner', finishedAt: now })
      .where(and(eq(exportJobs.id, id), inArray(exportJobs.status, ACTIVE_STATUSES)))
      .run().changes > 0),
    selectJobsOfUser: (userId, filter, after, limit) => run(() => db.select().from(exportJobs)
      .where(and(
        eq(exportJobs.userId, userId),
        filter.statuses?.length ? inArray(exportJobs.status, filter.statuses) : undefined,
        filter.firmId === undefined ? undefined : eq(exportJobs.firmId, filter.firmId),
        filter.objectType === undefined ? undefined : eq(exportJobs.objectType, filter.objectType),
        after === undefined
          ? undefined
          : or(lt(exportJobs.createdAt, after.createdAt), and(eq(exportJobs.createdAt, after.createdAt), lt(exportJobs.id, after.id)))
      ))
      .orderBy(desc(exportJobs.createdAt), desc(exportJobs.id)).limit(limit).all()),
    countPendingAhead: (id) => run(() => q.pendingAhead.get({ id })?.n ?? 0),
  }
}
