import tap from 'tap'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { createUser, exportGate, sqliteOf } from './helpers/build.js'
import { buildExportApp, waitForJob, type Poll, seedObjects } from './helpers/exports.js'

async function listen (app: FastifyInstance): Promise<string> {
  return app.listen({ port: 0, host: '127.0.0.1' })
}

function jobRow (app: FastifyInstance, id: string) {
  return sqliteOf(app).prepare('SELECT status, started_at AS startedAt, finished_at AS finishedAt FROM export_jobs WHERE id = ?').get(id) as { status: string, startedAt: number, finishedAt: number }
}

/** Every unfinished answer carries an integer Retry-After; processed never decreases. */
function checkPolls (t: Pick<typeof tap, 'ok' | 'notOk' | 'equal'>, polls: Poll[], why: string): void {
  t.ok(polls.length > 0, `${why}: polled`)
  let last = 0
  let decreased = false
  let badRetry = 0
  for (const p of polls) {
    if (p.processed < last) decreased = true
    last = p.processed
    if (p.status === 'Pending' || p.status === 'InProgress') {
      if (p.retryAfter === undefined || !/^\d+$/.test(p.retryAfter)) badRetry++
    } else {
      t.equal(p.retryAfter, undefined, `${why}: no Retry-After once ${p.status}`)
    }
  }
  t.notOk(decreased, `${why}: progress.processed never decreased (${polls.map((p) => p.processed).join(',')})`)
  t.equal(badRetry, 0, `${why}: every unfinished status carried an integer Retry-After`)
}

tap.test('20 concurrent POSTs of one user: one 200, nineteen 409s naming it', async (t) => {
  // The job is held running until the 20 requests are answered.
  const gate = exportGate(t)
  const app = await buildExportApp(t, {}, { exportTask: gate.wrap })
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 5_000)
  const base = await listen(app)

  const responses = await Promise.all(Array.from({ length: 20 }, () =>
    fetch(`${base}/api/v1/idm/acme/users/export`, { method: 'POST', headers: u.headers })
      .then(async (res) => ({ status: res.status, type: res.headers.get('content-type'), body: await res.json() as Record<string, unknown> }))))

  const ok = responses.filter((r) => r.status === 200)
  const conflicts = responses.filter((r) => r.status === 409)
  t.equal(ok.length, 1, `exactly one 200 (statuses: ${responses.map((r) => r.status).join(',')})`)
  t.equal(conflicts.length, 19, 'nineteen 409s')
  const requestId = ok[0].body.requestId as string
  for (const c of conflicts) {
    t.match(c.type, /^application\/problem\+json/)
    t.equal(c.body.code, 'EXPORT_ALREADY_ACTIVE')
    t.equal(c.body.status, 409)
    t.equal(c.body.activeRequestId, requestId, 'the problem names the active request')
  }
  const jobs = sqliteOf(app).prepare('SELECT id FROM export_jobs').all()
  t.same(jobs, [{ id: requestId }], 'one job in the database')

  gate.release()
  const polls: Poll[] = []
  const done = await waitForJob(app, u.headers, requestId, { polls })
  t.equal(done.status, 'Completed')
  t.equal(done.result!.total, 5_000)
  checkPolls(t, polls, 'the job')

  const next = await fetch(`${base}/api/v1/idm/acme/users/export`, { method: 'POST', headers: u.headers })
  t.equal(next.status, 200, 'once it completed the user can start again')
  const nextId = (await next.json() as { requestId: string }).requestId
  t.not(nextId, requestId)
  t.equal((await waitForJob(app, u.headers, nextId)).status, 'Completed')
})

for (const workers of [2, 1]) {
  tap.test(`two users of one firm both export (EXPORT_WORKERS=${workers})`, async (t) => {
    const app = await buildExportApp(t, { EXPORT_WORKERS: String(workers), EXPORT_JOB_SIZE: '10000' })
    const a = await createUser(app, ['acme'], 'a')
    const b = await createUser(app, ['acme'], 'b')
    await seedObjects(app, 'acme', 'users', 20_000)
    const base = await listen(app)

    const [ra, rb] = await Promise.all([a, b].map((u) => fetch(`${base}/api/v1/idm/acme/users/export`, { method: 'POST', headers: u.headers })))
    t.equal(ra.status, 200, 'user a starts')
    t.equal(rb.status, 200, 'user b is not blocked by user a')
    const ida = (await ra.json() as { requestId: string }).requestId
    const idb = (await rb.json() as { requestId: string }).requestId

    const pollsA: Poll[] = []
    const pollsB: Poll[] = []
    const [sa, sb] = await Promise.all([
      waitForJob(app, a.headers, ida, { polls: pollsA }),
      waitForJob(app, b.headers, idb, { polls: pollsB }),
    ])
    t.equal(sa.status, 'Completed', 'a completes')
    t.equal(sb.status, 'Completed', 'b completes')
    t.equal(sa.result!.total, 10_000)
    t.equal(sb.result!.total, 10_000)
    checkPolls(t, pollsA, 'a')
    checkPolls(t, pollsB, 'b')
    if (workers === 1) {
      const [ja, jb] = [jobRow(app, ida), jobRow(app, idb)].sort((x, y) => x.startedAt - y.startedAt)
      t.ok(jb.startedAt >= ja.finishedAt, 'with one worker the second job waited for the first')
    }
  })
}

tap.test('the database itself refuses a second active job of a user', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const v = await createUser(app, ['acme'], 'other')
  const store = app.store
  const job = (userId: string) => ({ id: `export-${randomUUID()}`, userId, firmId: 'acme', objectType: 'users', cursorIn: null, afterId: null, createdAt: Date.now() })

  const first = job(u.userId)
  t.equal(await store.exports.insertJob(first), 'inserted')
  t.equal(await store.exports.insertJob(job(u.userId)), 'active-job-exists', 'the one-active-job index refuses the second insert')
  t.equal(await store.exports.insertJob(job(v.userId)), 'inserted', 'another user has a slot of its own')

  await store.scheduler.markJobFailed(first.id, 'EXPORT_FAILED', 'test', Date.now())
  t.equal(await store.exports.insertJob(job(u.userId)), 'inserted', 'a finished job frees the slot')
})

tap.test('status polls are answered while a 100,000-object export runs', async (t) => {
  // The job's end is held until the polls have seen it running.
  const gate = exportGate(t)
  const app = await buildExportApp(t, {}, { exportTask: gate.wrap })
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 100_000)
  const base = await listen(app)

  const res = await fetch(`${base}/api/v1/idm/acme/users/export`, { method: 'POST', headers: u.headers })
  t.equal(res.status, 200)
  const { requestId } = await res.json() as { requestId: string }

  const seen: Array<{ status: string, processed: number, total?: number }> = []
  const codes = new Set<number>()
  let health = 0
  const deadline = Date.now() + 60_000
  for (;;) {
    const [status, healthz] = await Promise.all([
      fetch(`${base}/api/v1/request/${requestId}`, { headers: u.headers }),
      fetch(`${base}/healthz`),
    ])
    codes.add(status.status)
    if (healthz.status === 200) health++
    const body = await status.json() as { status: string, progress: { processed: number, total?: number } }
    seen.push({ status: body.status, processed: body.progress.processed, total: body.progress.total })
    if (body.status === 'Completed' || body.status === 'Failed') break
    // Once the page is written and three answers saw the job unfinished, it may end.
    if (gate.held() > 0 && seen.filter((s) => s.status === 'InProgress').length >= 3) gate.release()
    if (Date.now() > deadline) break
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.same([...codes], [200], 'every status read answered 200')
  const last = seen[seen.length - 1]
  t.equal(last.status, 'Completed', 'the job completed')
  const unfinished = seen.filter((s) => s.status === 'Pending' || s.status === 'InProgress')
  const inProgress = seen.filter((s) => s.status === 'InProgress')
  t.ok(unfinished.length >= 3, `several answers came before completion (${unfinished.length})`)
  t.ok(inProgress.length >= 1, `at least one answer showed the job InProgress (${inProgress.length})`)
  t.ok(health >= seen.length - 1, 'healthz answered alongside')
  const processed = seen.map((s) => s.processed)
  t.ok(processed.every((p, i) => i === 0 || p >= processed[i - 1]), 'processed never decreased')
  t.equal(last.processed, 100_000)
  const withTotal = inProgress.filter((s) => s.total !== undefined)
  t.ok(withTotal.every((s) => s.total === 100_000), 'progress.total, when given, is the page size')
  t.comment(`states seen: ${seen.map((s) => `${s.status[0]}${s.processed}`).join(' ')}`)
})
