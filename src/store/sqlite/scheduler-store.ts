import { and, asc, eq, gte, inArray, sql } from 'drizzle-orm'
import type { SchedulerStore } from '../scheduler-store.js'
import { ACTIVE_STATUSES, exportJobs } from '../schema.js'
import type { Db, Run } from './connection.js'

const p = sql.placeholder
const inProgress = (id: unknown) => and(eq(exportJobs.id, id as string), eq(exportJobs.status, 'InProgress'))

/** Statements prepared once per connection: progress is written many times per job. */
export function prepareSchedulerQueries (db: Db) {
  const oldestPending = db.select({ id: exportJobs.id }).from(exportJobs)
    .where(eq(exportJobs.status, 'Pending')).orderBy(asc(exportJobs.createdAt), sql`rowid`).limit(1)
  return {
    claim: db.update(exportJobs)
      .set({ status: 'InProgress', startedAt: sql`${p('now')}`, attempts: sql`${exportJobs.attempts} + 1` })
      .where(eq(exportJobs.id, sql`(${oldestPending})`)).returning().prepare(),
    processed: db.update(exportJobs).set({ processed: sql`max(${exportJobs.processed}, ${p('processed')})` })
      .where(inProgress(p('id'))).prepare(),
    expected: db.update(exportJobs).set({ total: sql`${p('total')}` }).where(inProgress(p('id'))).prepare(),
  }
}

/**
 * The scheduler store on SQLite. Its writes go through `runNoWait`: a database another
 * process has locked fails them at once instead of blocking the event loop. Recovery, at
 * start-up, waits for the lock as any other call does (`run`).
 */
export function createSchedulerStore (db: Db, q: ReturnType<typeof prepareSchedulerQueries>, runNoWait: Run, run: Run): SchedulerStore {
  return {
    claimNextPendingJob: (now) => runNoWait(() => q.claim.get({ now })),
    updateJobProgress: (id, { expected, processed }) => runNoWait(() => {
      if (expected !== undefined) q.expected.run({ id, total: expected })
      if (processed !== undefined) q.processed.run({ id, processed })
    }),
    markJobCompleted: (id, c) => runNoWait(() => db.update(exportJobs)
      .set({
        status: 'Completed',
        total: c.total,
        processed: sql`max(${exportJobs.processed}, ${c.total})`,
        fileName: c.fileName,
        bytes: c.bytes,
        sha256: c.sha256,
        nextCursor: c.nextCursor,
        remaining: c.remaining,
        finishedAt: c.finishedAt,
        expiresAt: c.expiresAt,
      })
      .where(inProgress(id)).run().changes > 0),
    markJobFailed: (id, code, message, now) => runNoWait(() => db.update(exportJobs)
      .set({ status: 'Failed', errorCode: code, errorMessage: message, finishedAt: now })
      .where(and(eq(exportJobs.id, id), inArray(exportJobs.status, ACTIVE_STATUSES))).run().changes > 0),
    markJobPending: (id) => runNoWait(() => { db.update(exportJobs).set({ status: 'Pending' }).where(inProgress(id)).run() }),
    markJobPendingRefunded: (id) => runNoWait(() => {
      db.update(exportJobs).set({ status: 'Pending', attempts: sql`max(0, ${exportJobs.attempts} - 1)` }).where(inProgress(id)).run()
    }),
    requeueInterruptedJobs: (maxAttempts, message, now) => run(() => db.transaction((t) => {
      const failed = t.update(exportJobs)
        .set({ status: 'Failed', errorCode: 'EXPORT_FAILED', errorMessage: message, finishedAt: now })
        .where(and(eq(exportJobs.status, 'InProgress'), gte(exportJobs.attempts, maxAttempts))).run().changes
      const requeued = t.update(exportJobs).set({ status: 'Pending' }).where(eq(exportJobs.status, 'InProgress')).run().changes
      return { failed, requeued }
    })),
  }
}
