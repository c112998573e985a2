import tap from 'tap'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { createUser, exportGate, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, readStatus, waitForJob, seedObjects } from './helpers/exports.js'

const HOUR = 3600 * 1000

/** POST export with an Idempotency-Key (none when `key` is undefined) and an optional body. */
async function post (app: FastifyInstance, headers: Record<string, string>, path: string, key: string | undefined, body?: unknown) {
  return app.inject({
    method: 'POST',
    url: `/api/v1/idm/${path}/export`,
    headers: key === undefined ? headers : { ...headers, 'idempotency-key': key },
    ...(body === undefined ? {} : { payload: body as object }),
  })
}

function jobIds (app: FastifyInstance): string[] {
  return sqliteOf(app).prepare('SELECT id FROM export_jobs ORDER BY created_at, rowid').pluck(true).all() as string[]
}

tap.test('same user, key and body: the same requestId (200) while active and after completion', async (t) => {
  // The job's end is held until the retries have been answered: it is active meanwhile.
  const gate = exportGate(t)
  const app = await buildExportApp(t, { EXPORT_WORKERS: '1' }, { exportTask: gate.wrap })
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 5_000)
  const key = `nightly-${randomUUID()}`

  const first = await post(app, u.headers, 'acme/users', key)
  t.equal(first.statusCode, 200, first.body)
  const requestId = first.json().requestId as string
  const location = first.headers.location

  // A retried start, in each spelling of "from the beginning".
  for (const [what, body] of [['no body', undefined], ['{}', {}], ['{"cursor":null}', { cursor: null }]] as const) {
    const again = await post(app, u.headers, 'acme/users', key, body)
    t.equal(again.statusCode, 200, `${what}: 200, not 409 (${again.body})`)
    t.equal(again.json().requestId, requestId, `${what}: the same requestId`)
    t.equal(again.headers.location, location, `${what}: the same Location`)
  }
  const active = (await readStatus(app, u.headers, requestId)).json().status
  t.ok(active === 'Pending' || active === 'InProgress', `the retries were answered while the job was active (${active})`)

  const noKey = await post(app, u.headers, 'acme/users', undefined)
  t.equal(noKey.statusCode, 409, 'without a key: the usual 409')
  t.equal(noKey.json().code, 'EXPORT_ALREADY_ACTIVE')
  t.equal(noKey.json().activeRequestId, requestId)
  const otherKey = await post(app, u.headers, 'acme/users', `other-${randomUUID()}`)
  t.equal(otherKey.statusCode, 409, 'another key is another request: 409 while one is active')
  t.same(jobIds(app), [requestId], 'one job in the database')

  gate.release()
  t.equal((await waitForJob(app, u.headers, requestId)).status, 'Completed')
  const after = await post(app, u.headers, 'acme/users', key)
  t.equal(after.statusCode, 200, 'after completion')
  t.equal(after.json().requestId, requestId, 'still the same requestId, no second export')
  t.same(jobIds(app), [requestId], 'still one job')

  const fresh = await post(app, u.headers, 'acme/users', undefined)
  t.equal(fresh.statusCode, 200, 'without a key a new export starts as usual')
  t.not(fresh.json().requestId, requestId)
  await waitForJob(app, u.headers, fresh.json().requestId)
})

tap.test('same key with a different request: 422 IDEMPOTENCY_KEY_REUSED', async (t) => {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '2' })
  const u = await createUser(app, ['acme', 'beta'])
  const imported = await importLines(app, u.headers, 'acme', 'users', ['a', 'b', 'c', 'd', 'e'].map((id) => JSON.stringify({ id })))
  t.equal(imported.statusCode, 200)
  const key = `k-${randomUUID()}`

  const first = await post(app, u.headers, 'acme/users', key)
  const requestId = first.json().requestId as string
  const done = await waitForJob(app, u.headers, requestId)
  const cursor = done.result!.nextCursor
  t.type(cursor, 'string', 'a first page with a next cursor')

  const differing: Array<[string, string, unknown]> = [
    ['another cursor', 'acme/users', { cursor }],
    ['another object type', 'acme/groups', undefined],
    ['another firm', 'beta/users', undefined],
  ]
  for (const [what, path, body] of differing) {
    const res = await post(app, u.headers, path, key, body)
    t.equal(res.statusCode, 422, `${what}: ${res.body}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, what)
    t.equal(res.json().code, 'IDEMPOTENCY_KEY_REUSED', what)
    t.equal(res.json().requestId, requestId, `${what}: names the request the key belongs to`)
  }
  t.same(jobIds(app), [requestId], 'no job was started by them')

  // While the key's job is active, a different body is still a 422, not a 409.
  const key2 = `k-${randomUUID()}`
  const second = await post(app, u.headers, 'acme/users', key2, { cursor })
  t.equal(second.statusCode, 200)
  const secondId = second.json().requestId as string
  const mismatch = await post(app, u.headers, 'acme/users', key2)
  t.equal(mismatch.statusCode, 422, 'the same key without the cursor')
  t.equal(mismatch.json().requestId, secondId)
  t.equal((await post(app, u.headers, 'acme/users', key2, { cursor })).json().requestId, secondId, 'with it: replayed')
  await waitForJob(app, u.headers, secondId)

  const original = await post(app, u.headers, 'acme/users', key)
  t.equal(original.statusCode, 200, 'the first key still replays its own request')
  t.equal(original.json().requestId, requestId)
  t.same(jobIds(app), [requestId, secondId])
})

tap.test("a key belongs to its user: another user's same key gets its own job", async (t) => {
  const app = await buildExportApp(t)
  const alice = await createUser(app, ['acme'], 'alice')
  const bob = await createUser(app, ['acme'], 'bob')
  const key = 'shared-key-1'

  const a = await post(app, alice.headers, 'acme/users', key)
  const b = await post(app, bob.headers, 'acme/users', key)
  t.equal(a.statusCode, 200)
  t.equal(b.statusCode, 200, b.body)
  t.not(b.json().requestId, a.json().requestId, 'two jobs')
  t.equal((await readStatus(app, bob.headers, b.json().requestId)).statusCode, 200, 'bob owns his')
  t.equal((await readStatus(app, bob.headers, a.json().requestId)).statusCode, 404, "and cannot see alice's")
  t.equal((await post(app, alice.headers, 'acme/users', key)).json().requestId, a.json().requestId, 'each replays their own')
  t.equal((await post(app, bob.headers, 'acme/users', key)).json().requestId, b.json().requestId)
  t.equal(jobIds(app).length, 2)
  await waitForJob(app, alice.headers, a.json().requestId)
  await waitForJob(app, bob.headers, b.json().requestId)
})

tap.test('a key replays for 24 hours, then no longer', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const key = `daily-${randomUUID()}`
  const ageTo = (id: string, ms: number) =>
    sqliteOf(app).prepare('UPDATE export_jobs SET created_at = ? WHERE id = ?').run(Date.now() - ms, id)

  const first = (await post(app, u.headers, 'acme/users', key)).json().requestId as string
  await waitForJob(app, u.headers, first)

  ageTo(first, 23 * HOUR)
  const within = await post(app, u.headers, 'acme/users', key)
  t.equal(within.statusCode, 200)
  t.equal(within.json().requestId, first, '23 hours later: replayed')
  t.equal((await post(app, u.headers, 'acme/groups', key)).statusCode, 422, '23 hours later: a different body is still refused')

  ageTo(first, 24 * HOUR + 60_000)
  const expired = await post(app, u.headers, 'acme/users', key)
  t.equal(expired.statusCode, 200, expired.body)
  const second = expired.json().requestId as string
  t.not(second, first, 'past 24 hours: a new export')
  t.equal((await post(app, u.headers, 'acme/users', key)).json().requestId, second, 'which the key now replays')
  await waitForJob(app, u.headers, second)

  ageTo(second, 25 * HOUR)
  const reused = await post(app, u.headers, 'acme/groups', key)
  t.equal(reused.statusCode, 200, 'an expired key may start a different request')
  t.not(reused.json().requestId, second)
  t.equal(jobIds(app).length, 3)
  await waitForJob(app, u.headers, reused.json().requestId)
})

tap.test('20 concurrent identical POSTs with one key: all 200, one requestId, one job', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 30_000)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const key = `burst-${randomUUID()}`

  const responses = await Promise.all(Array.from({ length: 20 }, () =>
    fetch(`${base}/api/v1/idm/acme/users/export`, {
      method: 'POST',
      headers: { ...u.headers, 'content-type': 'application/json', 'idempotency-key': key },
      body: '{"cursor":null}',
    }).then(async (res) => ({ status: res.status, body: await res.json() as { requestId?: string, code?: string } }))))

  t.same(responses.map((r) => r.status), Array(20).fill(200), 'all 200')
  const ids = new Set(responses.map((r) => r.body.requestId))
  t.equal(ids.size, 1, `one requestId (${[...ids].join(', ')})`)
  t.same(jobIds(app), [...ids], 'one job in the database')
  t.equal((await waitForJob(app, u.headers, [...ids][0]!)).result?.total, 30_000)
})

tap.test('an invalid Idempotency-Key is a 400 and starts nothing', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const bad: Array<[string, string]> = [
    ['empty', ''],
    ['with spaces', 'has space'],
    ['with a tab', 'tab\tkey'],
    ['Latin-1', 'clé'],
    ['UTF-8 bytes', Buffer.from('ключ-😀', 'utf8').toString('latin1')],
    ['256 characters', 'k'.repeat(256)],
    ['10,000 characters', 'k'.repeat(10_000)],
  ]
  for (const [what, key] of bad) {
    const res = await post(app, u.headers, 'acme/users', key)
    t.equal(res.statusCode, 400, `${what}: ${res.statusCode}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, what)
    t.equal(res.json().code, 'VALIDATION_FAILED', what)
  }
  t.same(jobIds(app), [], 'no job')

  const longest = ('!"#$%&\'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~' + '~'.repeat(255)).slice(0, 255)
  t.equal(longest.length, 255)
  const ok = await post(app, u.headers, 'acme/users', longest)
  t.equal(ok.statusCode, 200, `255 printable ASCII characters are a valid key: ${ok.body}`)
  t.equal((await post(app, u.headers, 'acme/users', longest)).json().requestId, ok.json().requestId)
  await waitForJob(app, u.headers, ok.json().requestId)
})
