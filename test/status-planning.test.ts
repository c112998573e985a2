import tap from 'tap'
import { statusView } from '../src/services/export-view.js'
import { createSigner } from '../src/services/signing.js'
import type { ExportJob } from '../src/store/exports-store.js'
import { createUser, exportGate, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, exportChain, postExport, readStatus, seedObjects, startExport, waitForJob, type JobStatusBody } from './helpers/exports.js'

tap.test('a Pending job tells how many jobs are ahead of it in the queue', async (t) => {
  const app = await buildExportApp(t, { EXPORT_WORKERS: '1' })
  const users = await Promise.all(['a', 'b', 'c'].map((name) => createUser(app, ['acme'], name)))
  app.services.scheduler.pause()
  const ids: string[] = []
  for (const u of users) ids.push(await startExport(app, u.headers, 'acme', 'users'))
  const ahead = async (): Promise<unknown[]> => Promise.all(ids.map(async (id, i) => ((await readStatus(app, users[i].headers, id)).json() as JobStatusBody).queue?.jobsAhead))
  t.same(await ahead(), [0, 1, 2], 'the oldest first')
  sqliteOf(app).prepare('UPDATE export_jobs SET created_at = 1').run()
  t.same(await ahead(), [0, 1, 2], 'in the order the scheduler claims them, within one millisecond too')
  const third = await readStatus(app, users[2].headers, ids[2])
  t.equal(third.headers['retry-after'], '3', 'Retry-After grows with the queue ahead (one worker)')
  app.services.scheduler.start()
  const done = await waitForJob(app, users[2].headers, ids[2])
  t.equal(done.queue, undefined, 'a finished job has no queue position')
})

tap.test('an InProgress job tells its rate and about when it will be done', async (t) => {
  const signer = createSigner('s'.repeat(32))
  const now = Date.parse('2026-11-28T12:00:10.000Z')
  const job: ExportJob = {
    id: 'export-3f1c2b7a-9d4e-4f6a-8b2c-1e0d9f8a7b6c',
    userId: 'user-1',
    firmId: 'acme',
    objectType: 'users',
    status: 'InProgress',
    cursorIn: null,
    afterId: null,
    startOffset: 0,
    remaining: null,
    processed: 30_000,
    total: 100_000,
    nextCursor: null,
    fileName: null,
    bytes: null,
    sha256: null,
    errorCode: null,
    errorMessage: null,
    attempts: 1,
    idempotencyKey: null,
    requestHash: null,
    createdAt: now - 3000,
    startedAt: now - 2000,
    finishedAt: null,
    expiresAt: null,
  }
  const at = { baseUrl: 'http://x', now, signer, jobsAhead: 0, workers: 1 }
  t.same(statusView(job, at).view.progress, { processed: 30_000, total: 100_000, ratePerSecond: 15_000, etaSeconds: 5 },
    '30,000 in 2 s: 15,000/s, and 70,000 to go take about 5 s')
  t.same(statusView({ ...job, processed: 0 }, at).view.progress, { processed: 0, total: 100_000 }, 'no rate before the first objects')
  t.same(statusView({ ...job, total: null }, at).view.progress, { processed: 30_000, ratePerSecond: 15_000 }, 'no ETA before the page size is known')

  // And from a real job, read while it runs.
  // The job's end is held until a read has seen it running.
  const gate = exportGate(t)
  const app = await buildExportApp(t, {}, { exportTask: gate.wrap })
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 20_000)
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  let running: JobStatusBody | undefined
  for (const deadline = Date.now() + 60_000; !running && Date.now() < deadline;) {
    const view = (await readStatus(app, u.headers, requestId)).json() as JobStatusBody
    if (view.status === 'InProgress' && view.progress.processed > 0) running = view
    if (view.status !== 'Pending' && view.status !== 'InProgress') break
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  gate.release()
  t.ok(running, 'a read caught the job running')
  t.ok(running!.progress.ratePerSecond! > 0, `objects per second: ${running!.progress.ratePerSecond}`)
  t.ok(running!.progress.etaSeconds! >= 0 && running!.progress.etaSeconds! < 600, `seconds left: ${running!.progress.etaSeconds}`)
  const done = await waitForJob(app, u.headers, requestId)
  t.equal(done.progress.ratePerSecond, undefined, 'a finished job reports no rate')
  t.equal(done.progress.etaSeconds, undefined)
})

tap.test('each page says which cursor it exports and how many objects follow it', async (t) => {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '3' })
  const u = await createUser(app, ['acme'])
  const lines = Array.from({ length: 8 }, (_, i) => JSON.stringify({ id: `u-${i}` }))
  t.equal((await importLines(app, u.headers, 'acme', 'users', lines)).statusCode, 200)
  const pages = await exportChain(app, u.headers, 'acme', 'users')
  t.same(pages.map((p) => p.status.cursor), [null, pages[0].result.nextCursor, pages[1].result.nextCursor], 'the first page from no cursor, each next from the one before')
  t.same(pages.map((p) => p.result.remaining), [5, 2, 0], 'objects left after each page')

  // A job found through a 409 can be adopted: its status says which page it is.
  app.services.scheduler.pause()
  const active = await startExport(app, u.headers, 'acme', 'users', pages[1].result.nextCursor)
  const conflict = await postExport(app, u.headers, 'acme', 'users', {})
  t.equal(conflict.statusCode, 409)
  const adopted = (await readStatus(app, u.headers, conflict.json().activeRequestId)).json() as JobStatusBody
  t.equal(adopted.requestId, active)
  t.equal(adopted.cursor, pages[1].result.nextCursor, 'the active job names the page it exports')
  app.services.scheduler.start()
})
