import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLocalStorage } from '../src/files/local-storage.js'
import { createAdminService } from '../src/services/admin.js'
import { createExportEvents } from '../src/services/export-events.js'
import { createExportScheduler, type RunTask } from '../src/services/export-scheduler.js'
import { createSigner } from '../src/services/signing.js'
import type { ExportJob } from '../src/store/exports-store.js'
import { checkTransactionNesting } from '../src/store/sqlite/connection.js'
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/sqlite-store.js'
import type { Store } from '../src/store/store.js'

checkTransactionNesting()

const silent = { debug: () => {}, warn: () => {}, error: () => {} }

/**
 * A real SQLite store with one Pending job, and the same store as a database across a
 * network would look: the claim's answer arrives `lagMs` after the row was claimed.
 */
async function setup (t: Test, lagMs: number) {
  const dir = mkdtempSync(join(tmpdir(), 'bes-sched-'))
  const store = openSqliteStore(join(dir, 'data'))
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const admin = createAdminService(store)
  await admin.putFirm('acme', undefined)
  const user = await admin.createUser('u', ['acme'])
  const jobId = `export-${randomUUID()}`
  await store.exports.insertJob({ id: jobId, userId: user.userId, firmId: 'acme', objectType: 'users', cursorIn: null, afterId: null, createdAt: Date.now() })
  let claimed: (() => void) | undefined
  const slow: Store = {
    ...store,
    scheduler: {
      ...store.scheduler,
      claimNextPendingJob: async (now) => {
        const job = await store.scheduler.claimNextPendingJob(now)
        claimed?.()
        await sleep(lagMs)
        return job
      },
    },
  }
  const started: string[] = []
  // The worker pool is not the subject here: record what would have run.
  const runTask: RunTask = async () => {
    started.push('task')
    return { ok: false, code: 'EXPORT_READ_FAILED', message: 'not run in this test' }
  }
  const scheduler = createExportScheduler({
    store: slow,
    events: createExportEvents({ store: slow }),
    storage: createLocalStorage(join(dir, 'files')),
    signer: createSigner('s'.repeat(32)),
    runTask,
    config: { exportJobSize: 10, exportWorkers: 1, fileTtlSeconds: 60 },
    log: silent,
  })
  const whenClaimed = new Promise<void>((resolve) => { claimed = resolve })
  const row = async (): Promise<ExportJob> => (await store.exports.selectJob(jobId))!
  return { store: store as SqliteStore, scheduler, jobId, started, whenClaimed, row }
}

t.test('a job cancelled while its claim is on the way back is never started', async (t) => {
  const { store, scheduler, jobId, started, whenClaimed, row } = await setup(t, 50)
  scheduler.start()
  await whenClaimed
  t.equal((await row()).status, 'InProgress', 'the row is claimed, the answer not yet back')
  t.ok(await store.exports.markJobCancelled(jobId, Date.now()), 'the owner cancels it')
  scheduler.abort(jobId)
  await sleep(200) // the claim's answer arrives; the scheduler is still running
  t.same(started, [], 'no worker ran it')
  await scheduler.stop(1000)
  t.equal(scheduler.runningCount(), 0)
  t.match(await row(), { status: 'Failed', errorCode: 'CANCELLED' })
})

t.test('a stop that begins while a claim is on the way back puts the job back, attempt refunded', async (t) => {
  const { scheduler, started, whenClaimed, row } = await setup(t, 50)
  scheduler.start()
  await whenClaimed
  await scheduler.stop(1000)
  t.same(started, [], 'no worker ran it')
  t.match(await row(), { status: 'Pending', attempts: 0 }, 'queued again as if never claimed')
})

t.test('a store call inside a transaction is refused instead of waiting for it forever', async (t) => {
  const { store, jobId } = await setup(t, 0)
  await t.rejects(store.transaction(async () => store.exports.selectActiveJobId('x')), /must go through the `tx`/)
  await t.rejects(store.transaction(async () => store.transaction(async () => 1)), /do not nest/)
  await t.resolves(store.ping(), 'and the store is usable afterwards')
  t.equal(await store.transaction(async (tx) => (await tx.exports.selectJob(jobId))?.status), 'Pending', 'calls on tx run')
})
