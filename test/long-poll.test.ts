import tap from 'tap'
import { createUser, sqliteOf } from './helpers/build.js'
import { buildExportApp, seedObjects, startExport, waitForJob, type JobStatusBody } from './helpers/exports.js'

type App = Awaited<ReturnType<typeof buildExportApp>>

async function listen (app: App): Promise<string> {
  return app.listen({ port: 0, host: '127.0.0.1' })
}

/** A long-poll over the socket: the status body, its headers and when it arrived. */
async function longPoll (base: string, headers: Record<string, string>, requestId: string, prefer: string) {
  const res = await fetch(`${base}/api/v1/request/${requestId}`, { headers: { ...headers, prefer } })
  return { status: res.status, headers: res.headers, body: await res.json() as JobStatusBody, at: Date.now() }
}

/** Counts the job-row reads the long-poll machinery makes (it reads through store.exports.selectJob). */
function countJobReads (app: App): { reads: () => number } {
  const exportsStore = app.store.exports as { selectJob: (id: string) => Promise<unknown> }
  const real = exportsStore.selectJob
  let n = 0
  exportsStore.selectJob = async (id) => {
    n++
    return real(id)
  }
  return { reads: () => n }
}

async function until (what: string, fn: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

tap.test('a waiter is answered as soon as its job completes, with Preference-Applied', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 50_000)
  const base = await listen(app)
  app.services.scheduler.pause()
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const answer = longPoll(base, u.headers, requestId, 'wait=30')
  await until('the request to wait', () => app.services.events.waiting() === 1)
  app.services.scheduler.start()
  const { status, headers, body, at } = await answer
  t.equal(status, 200)
  t.equal(headers.get('preference-applied'), 'wait=30')
  t.not(body.status, 'Pending', `answered once the job moved on (${body.status})`)
  // Waiting again goes on to the end of the job (a slow job also wakes on progress, at most once a second).
  let end = { body, at }
  while (end.body.status !== 'Completed' && end.body.status !== 'Failed') end = await longPoll(base, u.headers, requestId, 'wait=30')
  t.equal(end.body.status, 'Completed')
  const finishedAt = sqliteOf(app).prepare('SELECT finished_at FROM export_jobs WHERE id = ?').pluck().get(requestId) as number
  t.ok(end.at - finishedAt < 1000, `answered ${end.at - finishedAt} ms after the job finished, not at the end of the wait`)
  t.equal(app.services.events.waiting(), 0, 'no waiter is left behind')
})

tap.test('a finished job answers a long-poll at once; the preference is capped at 60 s and ignored when malformed', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 10)
  const base = await listen(app)
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  await waitForJob(app, u.headers, requestId)
  for (const [prefer, applied] of [['wait=30', 'wait=30'], ['wait=600', 'wait=60'], ['respond-async, wait=5', 'wait=5'], ['WAIT = "7"', 'wait=7'], ['wait=soon', null], ['handling=lenient', null]]) {
    const t0 = Date.now()
    const res = await longPoll(base, u.headers, requestId, prefer as string)
    t.equal(res.body.status, 'Completed', prefer as string)
    t.ok(res.at - t0 < 1000, `${prefer}: answered at once (${res.at - t0} ms)`)
    t.equal(res.headers.get('preference-applied'), applied, `${prefer}: Preference-Applied ${applied}`)
  }
})

tap.test('1,000 waiters on one job cost a handful of row reads, and all learn it completed', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 20_000)
  const base = await listen(app)
  app.services.scheduler.pause()
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const waiters = Array.from({ length: 1000 }, () => longPoll(base, u.headers, requestId, 'wait=60'))
  await until('1,000 requests to wait', () => app.services.events.waiting() === 1000)
  const { reads } = countJobReads(app)
  app.services.scheduler.start()
  const first = await Promise.all(waiters)
  t.ok(first.every((a) => a.status === 200 && a.body.status !== 'Pending'), 'all 1,000 are answered when the job starts')
  t.ok(reads() <= 5, `the wake-up of 1,000 waiters cost ${reads()} reads of the job row, not one per waiter`)
  // Each waits again (as a client would) until the end: every new request reads its job
  // once, as any status read does, and the job's completion is one more read for all.
  const before = reads()
  const finals = await Promise.all(first.map(async (res) => {
    while (res.body.status !== 'Completed') res = await longPoll(base, u.headers, requestId, 'wait=60')
    return res.body.status
  }))
  t.equal(finals.filter((s) => s === 'Completed').length, 1000, 'every waiter saw the job complete')
  t.ok(reads() - before <= 1000 + 5, `the second round cost ${reads() - before} reads: one per request, and a handful for the change`)
})

tap.test('a stop answers every waiter at once', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 10)
  const base = await listen(app)
  app.services.scheduler.pause()
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const waiters = Array.from({ length: 50 }, () => longPoll(base, u.headers, requestId, 'wait=60'))
  await until('50 requests to wait', () => app.services.events.waiting() === 50)
  const t0 = Date.now()
  const closed = app.close()
  const answers = await Promise.all(waiters)
  t.ok(Date.now() - t0 < 5000, `all answered within ${Date.now() - t0} ms of the stop, not after their 60 s`)
  t.ok(answers.every((a) => a.status === 200 && a.body.status === 'Pending'), 'with the status as it is')
  await closed
})

tap.test('a waiter that goes away is forgotten', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const base = await listen(app)
  app.services.scheduler.pause()
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const gone = new AbortController()
  const req = fetch(`${base}/api/v1/request/${requestId}`, { headers: { ...u.headers, prefer: 'wait=60' }, signal: gone.signal }).catch(() => 'aborted')
  await until('the request to wait', () => app.services.events.waiting() === 1)
  gone.abort()
  t.equal(await req, 'aborted')
  await until('the waiter to be dropped', () => app.services.events.waiting() === 0)
  t.equal(app.services.events.waiting(), 0)
})
