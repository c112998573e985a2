import t, { type Test } from 'tap'
import { buildApp } from '../src/app.js'
import { loggerOptions } from '../src/logger.js'
import { loadConfig } from '../src/config.js'
import { ERRORS } from '../src/errors.js'
import { admin, build, createUser, sqliteOf } from './helpers/build.js'

interface Reply { statusCode: number, headers: Record<string, unknown>, body: string, json: () => any }

/** Asserts an RFC 9457 problem with the given status and code; returns its body. */
function assertProblem (t: Pick<Test, 'equal' | 'match' | 'ok' | 'type'>, res: Reply, status: number, code: string): Record<string, any> {
  t.equal(res.statusCode, status, `status ${status}: ${res.body}`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, 'problem+json')
  const body = res.json()
  t.equal(body.code, code)
  t.equal(body.status, status)
  t.match(body.type, /^urn:bulk-export:problem:[a-z-]+$/, 'type is a problem URN')
  t.equal(body.title, ERRORS[code as keyof typeof ERRORS].title)
  t.type(body.detail, 'string')
  t.ok(body.detail.length > 0, 'a detail for a person')
  t.ok(res.headers['x-request-id'], 'X-Request-Id')
  return body
}

t.test('an unknown route is a 404 problem', async (t) => {
  const app = await build(t)
  for (const [method, url] of [['GET', '/nope'], ['POST', '/api/v1/nope?x=1'], ['GET', '/api/v1/idm/acme']] as const) {
    const body = assertProblem(t, await app.inject({ method, url }), 404, 'NOT_FOUND')
    t.equal(body.type, 'urn:bulk-export:problem:not-found')
    t.match(body.detail, url.split('?')[0], 'the detail names the path')
  }
})

t.test('a malformed JSON body is a 400 problem', async (t) => {
  const app = await build(t)
  await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: admin })
  for (const payload of ['{"name":', '{name: "x"}', '[1,', '{"name":"a","firms":["acme"]}}']) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { ...admin, 'content-type': 'application/json' }, payload })
    const body = assertProblem(t, res, 400, 'VALIDATION_FAILED')
    t.equal(body.type, 'urn:bulk-export:problem:validation-failed')
  }
  const proto = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { ...admin, 'content-type': 'application/json' }, payload: '{"name":"a","firms":["acme"],"__proto__":{"x":1}}' })
  assertProblem(t, proto, 400, 'VALIDATION_FAILED')
  const missing = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { ...admin, 'content-type': 'application/json' }, payload: '' })
  assertProblem(t, missing, 400, 'VALIDATION_FAILED')
  const users = sqliteOf(app).prepare('SELECT count(*) AS n FROM users').get() as { n: number }
  t.equal(users.n, 0, 'no user was created')
})

t.test('a body of the wrong Content-Type is a 415 problem', async (t) => {
  const app = await build(t)
  await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: admin })
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/x-ndjson']) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { ...admin, 'content-type': type }, payload: '{"name":"a","firms":["acme"]}' })
    const body = assertProblem(t, res, 415, 'UNSUPPORTED_MEDIA_TYPE')
    t.equal(body.type, 'urn:bulk-export:problem:unsupported-media-type')
  }
  const u = await createUser(app, ['acme'])
  const imp = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': 'application/json' }, payload: '{"id":"a"}' })
  assertProblem(t, imp, 415, 'UNSUPPORTED_MEDIA_TYPE')
  const put = await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/a', headers: { ...u.headers, 'content-type': 'text/csv' }, payload: 'id\na' })
  assertProblem(t, put, 415, 'UNSUPPORTED_MEDIA_TYPE')
  const objects = sqliteOf(app).prepare('SELECT count(*) AS n FROM objects').get() as { n: number }
  t.equal(objects.n, 0, 'nothing was written')
})

t.test('an unexpected error is a 500 that hides its cause and logs it', async (t) => {
  const lines: string[] = []
  const config = loadConfig({ DATA_DIR: t.testdir(), ADMIN_TOKEN: 'test-admin-token-0123456789', LOG_LEVEL: 'info' })
  const app = await buildApp(config, { logger: { ...(loggerOptions(config) as object), stream: { write: (line: string) => { lines.push(line) } } } })
  t.teardown(() => app.close())
  // A test-only route (not in the spec) that fails the way a bug would.
  app.get('/test-only/boom', async () => {
    throw new Error('boom: SELECT secret FROM tokens WHERE hash = \'abc\'')
  })

  const boom = await app.inject({ url: '/test-only/boom', headers: { 'x-request-id': 'boom-1' } })
  const body = assertProblem(t, boom, 500, 'INTERNAL')
  t.equal(body.type, 'urn:bulk-export:problem:internal')
  t.match(body.detail, 'boom-1', 'the detail gives the request id to quote')
  t.notMatch(boom.body, /boom:|SELECT|tokens|\bat \S+ \(|\.ts:\d+/, 'no message, SQL or stack')
  t.same(Object.keys(body).sort(), ['code', 'detail', 'instance', 'status', 'title', 'type'], 'no extra fields')

  // A real database fault: the store's table has gone.
  await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: { authorization: 'Bearer test-admin-token-0123456789' } })
  sqliteOf(app).exec('ALTER TABLE firms RENAME TO firms_gone')
  const sqlFault = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/globex', headers: { authorization: 'Bearer test-admin-token-0123456789', 'x-request-id': 'sql-1' } })
  assertProblem(t, sqlFault, 500, 'INTERNAL')
  t.notMatch(sqlFault.body, /select|insert|firms_gone|"firms"|sqlite|no such table|failed query|\bat \S+ \(/i, 'no SQL or stack in the response')

  const logged = lines.map((l) => JSON.parse(l))
  const boomLog = logged.find((l) => l.reqId === 'boom-1' && l.level >= 50)
  t.ok(boomLog, 'the 500 is logged as an error with its request id')
  t.match(boomLog?.err?.message, /boom:/, 'the log keeps the cause')
  t.match(boomLog?.err?.stack, /errors\.test\.ts/, 'and its stack')
  const sqlLog = logged.find((l) => l.reqId === 'sql-1' && l.level >= 50)
  t.ok(sqlLog, 'the database fault is logged')
  t.match(JSON.stringify(sqlLog?.err), /no such table: firms/, 'with what failed')

  // The store is still usable once the fault is gone.
  sqliteOf(app).exec('ALTER TABLE firms_gone RENAME TO firms')
  const healed = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/globex', headers: { authorization: 'Bearer test-admin-token-0123456789' } })
  t.equal(healed.statusCode, 201)
})

t.test('a closed database is a 500 on writes and a 503 on /readyz', async (t) => {
  const app = await build(t)
  await app.ready()
  sqliteOf(app).close()
  const put = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: admin })
  assertProblem(t, put, 500, 'INTERNAL')
  t.notMatch(put.body, /database|connection|sqlite/i, 'the cause is not in the response')
  const ready = await app.inject({ url: '/readyz' })
  assertProblem(t, ready, 503, 'SERVICE_UNAVAILABLE')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'the process is still alive')
})

t.test('every problem carries a urn:bulk-export:problem: type', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const responses = [
    await app.inject({ url: '/nope' }),
    await app.inject({ url: '/api/v1/idm/acme/users/a' }),
    await app.inject({ url: '/api/v1/idm/globex/users/a', headers: u.headers }),
    await app.inject({ url: '/api/v1/idm/acme/users/a', headers: u.headers }),
    await app.inject({ url: '/api/v1/idm/Acme!/users/a', headers: u.headers }),
    await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/a', headers: u.headers, payload: { id: 'b' } }),
    await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': 'application/x-ndjson' }, payload: '{"id":"a"}\nnot json\n' }),
    await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name: 'x', firms: ['acme'], extra: true } }),
  ]
  const statuses = responses.map((r) => r.statusCode)
  t.same(statuses, [404, 401, 403, 404, 400, 400, 400, 400])
  for (const res of responses) {
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    const body = res.json()
    t.ok(body.type.startsWith('urn:bulk-export:problem:'), `${res.statusCode} ${body.type}`)
    t.ok(body.code in ERRORS, `${body.code} is a known code`)
    t.equal(body.status, res.statusCode, 'status matches the HTTP status')
    for (const key of ['type', 'title', 'status', 'detail', 'code']) t.ok(key in body, `has ${key}`)
  }
})
