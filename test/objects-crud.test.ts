import t from 'tap'
import http from 'node:http'
import type { FastifyInstance } from 'fastify'
import { build, createUser, importLines, sqliteOf } from './helpers/build.js'

const url = (id: string, firmId = 'acme', type = 'users') => `/api/v1/idm/${firmId}/${type}/${encodeURIComponent(id)}`

function countRows (app: FastifyInstance): number {
  return (sqliteOf(app).prepare('SELECT count(*) AS n FROM objects').get() as { n: number }).n
}

/** One request over a real socket, the path sent exactly as given (no URL normalisation). */
function raw (port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number, type: string | undefined, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body: Buffer.concat(parts).toString('utf8') }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('PUT creates (201) then replaces (200); GET returns what PUT returned', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const v1 = { id: 'u-1', userName: 'ada@example.com', active: true, name: { given: 'Ada', family: 'Lovelace' }, tags: ['é', '😀'] }
  const created = await app.inject({ method: 'PUT', url: url('u-1'), headers: u.headers, payload: v1 })
  t.equal(created.statusCode, 201, created.body)
  t.match(created.headers['content-type'], /^application\/json/)
  t.same(created.json(), v1)
  const got = await app.inject({ url: url('u-1'), headers: u.headers })
  t.equal(got.statusCode, 200)
  t.match(got.headers['content-type'], /^application\/json/)
  t.equal(got.body, created.body, 'GET returns the stored bytes PUT answered with')
  t.same(got.json(), v1)

  const v2 = { id: 'u-1', userName: 'ada@example.com', active: false }
  const replaced = await app.inject({ method: 'PUT', url: url('u-1'), headers: u.headers, payload: v2 })
  t.equal(replaced.statusCode, 200)
  t.same(replaced.json(), v2)
  const got2 = await app.inject({ url: url('u-1'), headers: u.headers })
  t.equal(got2.body, replaced.body)
  t.same(got2.json(), v2, 'replaced, not merged: the old fields are gone')
  t.equal(countRows(app), 1)

  // PUT replaces an imported object too, and an import replaces a PUT one.
  await importLines(app, u.headers, 'acme', 'users', ['{"id":"imp","v":1}'])
  t.equal((await app.inject({ method: 'PUT', url: url('imp'), headers: u.headers, payload: { id: 'imp', v: 2 } })).statusCode, 200)
  t.equal((await app.inject({ url: url('imp'), headers: u.headers })).body, '{"id":"imp","v":2}')
  await importLines(app, u.headers, 'acme', 'users', ['{"id":"u-1","v":3}'])
  t.equal((await app.inject({ url: url('u-1'), headers: u.headers })).body, '{"id":"u-1","v":3}')
  t.equal(countRows(app), 2)
})

t.test('PUT stores the JSON values as sent: one line, no precision lost', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const pretty = '\ufeff {\n  "id": "p",\r\n  "n": 12345678901234567890,\n  "s": "a\\nb  \\u00e9 \\"q \\" \\\\",\n\t"f": 1.50,\n  "nested": { "a": [ 1, 2 ], "e": {} }\n}\n'
  const compact = '{"id":"p","n":12345678901234567890,"s":"a\\nb  \\u00e9 \\"q \\" \\\\","f":1.50,"nested":{"a":[1,2],"e":{}}}'
  t.same(JSON.parse(compact), JSON.parse(pretty.slice(1)), 'the expected text is the same JSON value')
  const res = await app.inject({ method: 'PUT', url: url('p'), headers: { ...u.headers, 'content-type': 'application/json' }, payload: pretty })
  t.equal(res.statusCode, 201, res.body)
  t.equal(res.body, compact, 'stored on one line, tokens as written: big numbers keep their digits')
  t.equal((await app.inject({ url: url('p'), headers: u.headers })).body, compact)
  // An import and a PUT of the same text store the same bytes.
  await importLines(app, u.headers, 'acme', 'users', [compact.replace('"p"', '"q"')])
  const put2 = await app.inject({ method: 'PUT', url: url('r'), headers: { ...u.headers, 'content-type': 'application/json' }, payload: compact.replace('"p"', '"r"') })
  t.equal(put2.body, (await app.inject({ url: url('q'), headers: u.headers })).body.replace('"q"', '"r"'))
})

t.test('PUT validation', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme', 'beta'])
  const put = (path: string, payload: string, contentType = 'application/json') =>
    app.inject({ method: 'PUT', url: path, headers: { ...u.headers, 'content-type': contentType }, payload })
  const refused = async (label: string, res: Awaited<ReturnType<typeof put>>, status: number, code: string) => {
    t.equal(res.statusCode, status, `${label}: ${status}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${label}: problem+json`)
    t.match(res.json(), { status, code }, `${label}: ${code}`)
  }
  await refused('body id differs from the path', await put(url('a'), '{"id":"b"}'), 400, 'VALIDATION_FAILED')
  await refused('no id', await put(url('a'), '{"name":"x"}'), 400, 'VALIDATION_FAILED')
  await refused('numeric id', await put(url('1'), '{"id":1}'), 400, 'VALIDATION_FAILED')
  await refused('empty id', await put('/api/v1/idm/acme/users/%20', '{"id":""}'), 400, 'VALIDATION_FAILED')
  await refused('array body', await put(url('a'), '[{"id":"a"}]'), 400, 'VALIDATION_FAILED')
  await refused('not JSON', await put(url('a'), '{"id":"a",}'), 400, 'VALIDATION_FAILED')
  await refused('empty body', await put(url('a'), ''), 400, 'VALIDATION_FAILED')
  await refused('NUL in the id', await put('/api/v1/idm/acme/users/a%00b', '{"id":"a\\u0000b"}'), 400, 'VALIDATION_FAILED')
  await refused('lone surrogate in the id (undecodable URL)', await put('/api/v1/idm/acme/users/a%ED%A0%80', '{"id":"a\\ud800"}'), 400, 'VALIDATION_FAILED')
  await refused('257-char id', await put(url('x'.repeat(257)), JSON.stringify({ id: 'x'.repeat(257) })), 400, 'VALIDATION_FAILED')
  await refused('bad object type', await put('/api/v1/idm/acme/Users/a', '{"id":"a"}'), 400, 'VALIDATION_FAILED')
  await refused('bad firm id', await put('/api/v1/idm/a.b/users/a', '{"id":"a"}'), 400, 'VALIDATION_FAILED')
  await refused('text/plain', await put(url('a'), '{"id":"a"}', 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE')
  await refused('NDJSON', await put(url('a'), '{"id":"a"}', 'application/x-ndjson'), 415, 'UNSUPPORTED_MEDIA_TYPE')
  await refused('unknown type', await put(url('a'), '{"id":"a"}', 'application/vnd.example+whatever'), 415, 'UNSUPPORTED_MEDIA_TYPE')
  t.equal(countRows(app), 0, 'nothing was written')

  t.equal((await put(url('x'.repeat(256)), JSON.stringify({ id: 'x'.repeat(256) }))).statusCode, 201, '256-char id accepted')
  t.equal((await put(url('cs'), '{"id":"cs"}', 'application/json; charset=utf-8')).statusCode, 201, 'charset parameter accepted')
})

t.test('PUT size: exactly OBJECT_MAX_BYTES accepted, one byte over is 413', async (t) => {
  const app = await build(t, { OBJECT_MAX_BYTES: '1024' })
  const u = await createUser(app, ['acme'])
  const sized = (id: string, n: number) => {
    const head = `{"id":"${id}","p":"`
    return head + 'x'.repeat(n - head.length - 2) + '"}'
  }
  const put = (id: string, payload: string) => app.inject({ method: 'PUT', url: url(id), headers: { ...u.headers, 'content-type': 'application/json' }, payload })

  const exact = sized('exact', 1024)
  const ok = await put('exact', exact)
  t.equal(ok.statusCode, 201, ok.body)
  t.equal(ok.body, exact)
  t.equal((await app.inject({ url: url('exact'), headers: u.headers })).body, exact)

  const over = await put('over', sized('over', 1025))
  t.equal(over.statusCode, 413)
  t.match(over.json(), { code: 'OBJECT_TOO_LARGE', status: 413 })

  // The limit applies to the stored (compact) form, in bytes.
  const pretty = JSON.stringify(JSON.parse(sized('pretty', 1024)), null, 8)
  t.ok(pretty.length > 1024)
  t.equal((await put('pretty', pretty)).statusCode, 201, 'a pretty body whose compact form fits')
  const multi = JSON.stringify({ id: 'mb', p: 'é'.repeat(510) })
  t.ok(multi.length < 1024)
  t.match((await put('mb', multi)).json(), { code: 'OBJECT_TOO_LARGE' }, 'counted in bytes, not characters')

  const huge = await put('huge', sized('huge', 200_000))
  t.equal(huge.statusCode, 413, 'a body far past the limit')
  t.match(huge.json(), { status: 413 })
  t.equal((await app.inject({ url: url('over'), headers: u.headers })).statusCode, 404)
  t.equal(countRows(app), 2)
})

t.test('DELETE, then GET and DELETE again are 404 problems', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}'])
  const del = await app.inject({ method: 'DELETE', url: url('a'), headers: u.headers })
  t.equal(del.statusCode, 204)
  t.equal(del.body, '')
  const gone = await app.inject({ url: url('a'), headers: u.headers })
  t.equal(gone.statusCode, 404)
  t.match(gone.headers['content-type'], /^application\/problem\+json/)
  t.match(gone.json(), { status: 404, code: 'NOT_FOUND', type: 'urn:bulk-export:problem:not-found', title: String, detail: String })
  const again = await app.inject({ method: 'DELETE', url: url('a'), headers: u.headers })
  t.equal(again.statusCode, 404)
  t.equal(again.json().code, 'NOT_FOUND')
  t.equal((await app.inject({ url: url('b'), headers: u.headers })).body, '{"id":"b"}', 'the other object is untouched')
  t.equal(countRows(app), 1)

  const missing = await app.inject({ url: url('never-existed'), headers: u.headers })
  t.equal(missing.statusCode, 404)
  t.match(missing.headers['content-type'], /^application\/problem\+json/)
  t.equal(missing.json().code, 'NOT_FOUND')
  // Same id in another type: not found either.
  t.equal((await app.inject({ url: url('b', 'acme', 'groups'), headers: u.headers })).statusCode, 404)
})

t.test('access: token required, only member firms', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const other = await createUser(app, ['beta'], 'other')
  await importLines(app, other.headers, 'beta', 'users', ['{"id":"secret"}'])
  for (const method of ['GET', 'PUT', 'DELETE'] as const) {
    const payload = method === 'PUT' ? { id: 'secret', hacked: true } : undefined
    const foreign = await app.inject({ method, url: url('secret', 'beta'), headers: u.headers, payload })
    t.equal(foreign.statusCode, 403, `${method} in a foreign firm: 403`)
    t.equal(foreign.json().code, 'FORBIDDEN')
    const anon = await app.inject({ method, url: url('secret', 'beta'), payload })
    t.equal(anon.statusCode, 401, `${method} without a token: 401`)
    t.equal(anon.json().code, 'UNAUTHENTICATED')
  }
  t.equal((await app.inject({ url: url('secret', 'beta'), headers: other.headers })).body, '{"id":"secret"}', 'unchanged')
})

t.test('ids that need URL-encoding round-trip through PUT, GET and DELETE', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const ids = ['a b', 'a/b', '/leading', 'trailing/', 'é中😀', '%', '%2F', 'a?b#c', 'a+b', 'a&b=c', "quote'\"", 'back\\slash', 'tab\there', ' ', 'line\nbreak']
  for (const id of ids) {
    const put = await app.inject({ method: 'PUT', url: url(id), headers: u.headers, payload: { id } })
    t.equal(put.statusCode, 201, `PUT ${JSON.stringify(id)}: ${put.body}`)
  }
  t.equal(countRows(app), ids.length, 'each id is its own object')
  for (const id of ids) {
    const get = await app.inject({ url: url(id), headers: u.headers })
    t.equal(get.statusCode, 200, `GET ${JSON.stringify(id)}`)
    t.same(get.json(), { id })
  }
  for (const id of ids) {
    t.equal((await app.inject({ method: 'DELETE', url: url(id), headers: u.headers })).statusCode, 204, `DELETE ${JSON.stringify(id)}`)
    t.equal((await app.inject({ url: url(id), headers: u.headers })).statusCode, 404)
  }
  t.equal(countRows(app), 0)

  // `.` and `..` (and their encodings) are ids like any other, sent as-is over a socket
  // (URL libraries normalise them away, so a real port is needed).
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const json = { ...u.headers, 'content-type': 'application/json' }
  for (const [id, paths] of [['..', ['..', '%2E%2E', '.%2e']], ['.', ['.', '%2E']]] as Array<[string, string[]]>) {
    const [first, ...rest] = paths
    const base = '/api/v1/idm/acme/users/'
    const put = await raw(port, 'PUT', base + first, json, JSON.stringify({ id }))
    t.equal(put.status, 201, `PUT ${first}: ${put.body}`)
    for (const p of paths) {
      const get = await raw(port, 'GET', base + p, u.headers)
      t.equal(get.status, 200, `GET ${p}`)
      t.same(JSON.parse(get.body), { id })
    }
    const del = await raw(port, 'DELETE', base + rest[0], u.headers)
    t.equal(del.status, 204, `DELETE ${rest[0]}`)
    t.equal((await raw(port, 'GET', base + first, u.headers)).status, 404)
  }

  // The longest id, made of characters that take 9 URL bytes each.
  const long = '中'.repeat(256)
  t.equal((await app.inject({ method: 'PUT', url: url(long), headers: u.headers, payload: { id: long } })).statusCode, 201)
  t.same((await app.inject({ url: url(long), headers: u.headers })).json(), { id: long })
  const emoji = '😀'.repeat(128)
  t.equal((await app.inject({ method: 'PUT', url: url(emoji), headers: u.headers, payload: { id: emoji } })).statusCode, 201)
  t.same((await app.inject({ url: url(emoji), headers: u.headers })).json(), { id: emoji })
})
