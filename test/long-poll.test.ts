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

async function until (what: string, fn: () => boolean, ms = 120_000): Promise<void> {
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
  while (end.body.status !== 'Completed' && end.body.status !== 'Failed') end = await longPoll(base, u.headers, requestId, 'wait=60')
  t.equal(end.body.status, 'Completed')
  const finishedAt = sqliteOf(app).prepare('SELECT finished_at FROM export_jobs WHERE id = ?').pluck().get(requestId) as number
  // Woken by the job's end, not by its 60 s wait running out (half of it is the margin for a loaded machine).
  t.ok(end.at - finishedAt < 30_000, `answered ${end.at - finishedAt} ms after the job finished, not at the end of the wait`)
  t.equal(app.services.events.waiting(), 0, 'no waiter is left behind')
})

tap.test('a finished job answers a long-poll at once; the preference is capped at 60 s and ignored when malformed', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 10)
  const base = await listen(app)
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  await waitForJob(app, u.headers, requestId)
  for (const [prefer, applied] of [['wait=50', 'wait=50'], ['wait=600', 'wait=60'], ['respond-async, wait=45', 'wait=45'], ['WAIT = "47"', 'wait=47'], ['wait=soon', null], ['handling=lenient', null]]) {
    const t0 = Date.now()
    const res = await longPoll(base, u.headers, requestId, prefer as string)
    t.equal(res.body.status, 'Completed', prefer as string)
    // Not held: a wait of 45 s or more, answered in under half of it on however loaded a machine.
    t.ok(res.at - t0 < 20_000, `${prefer}: answered at once (${res.at - t0} ms)`)
    t.equal(res.headers.get('preference-applied'), applied, `${prefer}: Preference-Applied ${applied}`)
  }
})

tap.test('1,000 waiters (100 users, 10 each on their own job) cost one row read per change, not one per waiter', async (t) => {
  const app = await buildExportApp(t)
  const users = await Promise.all(Array.from({ length: 100 }, (_, i) => createUser(app, ['acme'], `u${i}`)))
  await seedObjects(app, 'acme', 'users', 1000)
  const base = await listen(app)
  app.services.scheduler.pause()
  const jobs = await Promise.all(users.map((u) => startExport(app, u.headers, 'acme', 'users')))
  const waiters = users.flatMap((u, i) => Array.from({ length: 10 }, () => longPoll(base, u.headers, jobs[i], 'wait=60')))
  await until('1,000 requests to wait', () => app.services.events.waiting() === 1000)
  const { reads } = countJobReads(app)
  const events = app.services.events as { changed: (id: string) => void }
  const notify = events.changed
  let changes = 0
  events.changed = (id) => {
    changes++
    notify(id)
  }
  app.services.scheduler.start()
  const first = await Promise.all(waiters)
  t.ok(first.every((a) => a.status === 200 && a.body.status !== 'Pending'), 'all 1,000 are answered once their job starts')
  t.ok(reads() <= changes, `${reads()} reads of job rows for ${changes} changes to them, while 1,000 requests waited`)
  t.ok(reads() < 1000 / 2, 'far fewer than one per waiter')
})

tap.test('a stop answers every waiter at once', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 10)
  const base = await listen(app)
  app.services.scheduler.pause()
  const others = await Promise.all(Array.from({ length: 4 }, (_, i) => createUser(app, ['acme'], `o${i}`)))
  const all = [u, ...others]
  const ids = await Promise.all(all.map((x) => startExport(app, x.headers, 'acme', 'users')))
  const waiters = all.flatMap((x, i) => Array.from({ length: 10 }, () => longPoll(base, x.headers, ids[i], 'wait=60')))
  await until('50 requests to wait', () => app.services.events.waiting() === 50)
  const t0 = Date.now()
  const closed = app.close()
  const answers = await Promise.all(waiters)
  t.ok(Date.now() - t0 < 30_000, `all answered within ${Date.now() - t0} ms of the stop, not after their 60 s`)
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

tap.test('one user holds at most 10 waiting requests: more are answered at once, without Preference-Applied', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const base = await listen(app)
  app.services.scheduler.pause()
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const held = Array.from({ length: 10 }, () => longPoll(base, u.headers, requestId, 'wait=60'))
  await until('10 requests to wait', () => app.services.events.waiting() === 10)
  const t0 = Date.now()
  const eleventh = await longPoll(base, u.headers, requestId, 'wait=60')
  t.ok(eleventh.at - t0 < 30_000, `the 11th is answered at once (${eleventh.at - t0} ms), not after its 60 s`)
  t.equal(eleventh.headers.get('preference-applied'), null, 'and says it was not held')
  t.equal(eleventh.headers.get('retry-after'), '1', 'with when to ask again')
  t.match(eleventh.headers.get('vary'), /Prefer/)
  const other = await createUser(app, ['acme'], 'other')
  app.services.scheduler.start()
  await Promise.all(held)
  t.equal(app.services.events.waiting(), 0)
  t.ok(other, 'each user has a budget of its own')
})

tap.test('a cancel wakes the waiters of its job', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const base = await listen(app)
  app.services.scheduler.pause()
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const waiting = longPoll(base, u.headers, requestId, 'wait=60')
  await until('the request to wait', () => app.services.events.waiting() === 1)
  const t0 = Date.now()
  await app.inject({ method: 'DELETE', url: `/api/v1/request/${requestId}`, headers: u.headers })
  const res = await waiting
  t.equal(res.body.status, 'Failed')
  t.equal(res.body.error?.code, 'CANCELLED')
  t.ok(res.at - t0 < 30_000, `answered ${res.at - t0} ms after the cancel, not after its 60 s`)
})

tap.test('a waiter whose client left before it began waiting is not kept', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  app.services.scheduler.pause()
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const job = (await app.store.exports.selectJob(requestId))!
  const gone = new AbortController()
  gone.abort()
  const t0 = Date.now()
  const waited = await app.services.events.wait(job, app.services.events.mark(), 60_000, { holder: u.userId, signal: gone.signal })
  t.ok(Date.now() - t0 < 30_000, `it returns at once (${Date.now() - t0} ms), not after its 60 s`)
  t.equal(waited.held, false)
  t.equal(app.services.events.waiting(), 0, 'and no waiter (or timer) is left')
  app.services.scheduler.start()
})

tap.test('a change to another job does not make a new waiter read its own again', async (t) => {
  const app = await buildExportApp(t)
  const [a, b] = [await createUser(app, ['acme'], 'a'), await createUser(app, ['acme'], 'b')]
  app.services.scheduler.pause()
  const mine = (await app.store.exports.selectJob(await startExport(app, a.headers, 'acme', 'users')))!
  const theirs = await startExport(app, b.headers, 'acme', 'users')
  const { reads } = countJobReads(app)
  const since = app.services.events.mark()
  app.services.events.changed(theirs)
  const left = new AbortController()
  const waiting = app.services.events.wait(mine, since, 60_000, { holder: a.userId, signal: left.signal })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(reads(), 0, 'no read while it waits')
  left.abort()
  await waiting
  t.equal(reads(), 0, 'nor when its client leaves')
  await app.services.events.wait(mine, app.services.events.mark(), 50, { holder: a.userId })
  t.equal(reads(), 1, 'one at a timeout, for a fresh answer')
  app.services.scheduler.start()
})
