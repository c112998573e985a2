import t from 'tap'
import fc from 'fast-check'
import http from 'node:http'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { build, createUser, importLines, sqliteOf, stagedImports } from './helpers/build.js'
import { exportPage } from './helpers/exports.js'

type App = FastifyInstance

function countRows (app: App, table: 'objects' | 'imports'): number {
  return (sqliteOf(app).prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n
}

async function getObject (app: App, headers: Record<string, string>, firmId: string, type: string, id: string) {
  return app.inject({ url: `/api/v1/idm/${firmId}/${type}/${encodeURIComponent(id)}`, headers })
}

/** Polls until cond() holds or the deadline passes (a guard against a hang; it yields the CPU between checks). */
async function waitFor (cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

interface RawResponse { status: number, headers: http.IncomingHttpHeaders, body: string }

/** Opens a request over a real socket; the caller writes the body. */
function startRequest (port: number, opts: { method: string, path: string, headers: Record<string, string> }): { req: http.ClientRequest, response: Promise<RawResponse> } {
  const req = http.request({ host: '127.0.0.1', port, method: opts.method, path: opts.path, headers: opts.headers, agent: false })
  const response = new Promise<RawResponse>((resolve, reject) => {
    req.on('response', (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  return { req, response }
}

/**
 * Sends a request over a real socket, the body with chunked transfer encoding, one write
 * per chunk, honouring back-pressure; stops writing once the server has answered.
 */
async function send (port: number, opts: { method: string, path: string, headers: Record<string, string>, body: Iterable<Buffer> | AsyncIterable<Buffer> }): Promise<RawResponse> {
  const { req, response } = startRequest(port, opts)
  let answered = false
  response.then(() => { answered = true }, () => { answered = true })
  for await (const chunk of opts.body) {
    if (answered) break
    if (!req.write(chunk)) await Promise.race([once(req, 'drain'), response])
  }
  req.end()
  return response
}

const userLine = (i: number, pad = 0) => JSON.stringify({ id: `u-${i}`, userName: `user${i}@example.com`, active: i % 2 === 0, pad: 'x'.repeat(pad) })

/** NDJSON lines grouped into chunks of about `chunkBytes`. */
function * ndjsonChunks (count: number, lineOf: (i: number) => string, chunkBytes = 64 * 1024): Generator<Buffer> {
  let parts: string[] = []
  let size = 0
  for (let i = 0; i < count; i++) {
    const line = lineOf(i) + '\n'
    parts.push(line)
    size += line.length
    if (size >= chunkBytes) {
      yield Buffer.from(parts.join(''))
      parts = []
      size = 0
    }
  }
  if (parts.length) yield Buffer.from(parts.join(''))
}

t.test('import stores every line as given and GET returns the same bytes', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const lines = [
    '{"id":"plain","userName":"ada@example.com","active":true}',
    '{"id":"unicode","name":"Zoë Ångström 中文 Ελληνικά","emoji":"😀👩‍👩‍👧"}',
    '{"id":"escapes","s":"caf\\u00e9 \\"quoted\\" tab\\t newline\\n slash\\/ back\\\\","u":"\\ud83d\\ude00"}',
    '{"id":"big","n":12345678901234567890,"f":1.0,"e":1E+2,"neg":-0,"small":0.1000000000000000055511151231257827}',
    '{"id":"nested","a":{"b":{"c":[1,[2,[3,{"d":null}]],{"e":false}]}},"empty":{},"arr":[]}',
    '{ "id" : "spaced" ,\t"a" : [ 1 , 2 ] }',
    '{"id":"dup-keys","k":1,"k":2}',
    '{"id":"😀 é/..%2F?#"}',
  ]
  const res = await importLines(app, u.headers, 'acme', 'users', lines)
  t.equal(res.statusCode, 200, res.body)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(res.json(), { imported: lines.length })
  t.equal(countRows(app, 'objects'), lines.length)
  for (const line of lines) {
    const id = JSON.parse(line).id as string
    const get = await getObject(app, u.headers, 'acme', 'users', id)
    t.equal(get.statusCode, 200, `GET ${id}`)
    t.match(get.headers['content-type'], /^application\/json/)
    t.equal(get.rawPayload.toString('utf8'), line, `${id} comes back byte for byte`)
  }
  t.equal(stagedImports(app), 0, 'no stage file is left after the import')
})

t.test('property: any set of JSON objects imports and reads back byte for byte', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  let run = 0
  const objectArb = fc.record({
    id: fc.string({ minLength: 1, maxLength: 40 }).filter((s) => s.isWellFormed() && !s.includes('\0') && s !== '.' && s !== '..'),
    rest: fc.dictionary(fc.string({ maxLength: 10 }).filter((k) => k !== 'id'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
  }).map(({ id, rest }) => JSON.stringify({ id, ...rest }))
  await fc.assert(fc.asyncProperty(fc.array(objectArb, { minLength: 1, maxLength: 15 }), async (lines) => {
    const type = `t${run++}`
    const res = await importLines(app, u.headers, 'acme', type, lines)
    if (res.statusCode !== 200) throw new Error(`import: ${res.statusCode} ${res.body}`)
    if (res.json().imported !== lines.length) throw new Error(`imported ${res.body}`)
    const last = new Map<string, string>()
    for (const line of lines) last.set(JSON.parse(line).id, line)
    for (const [id, line] of last) {
      const get = await getObject(app, u.headers, 'acme', type, id)
      if (get.statusCode !== 200 || get.body !== line) throw new Error(`GET ${JSON.stringify(id)}: ${get.statusCode} ${get.body} (want ${line})`)
    }
  }), { numRuns: 25 })
  t.pass('property held')
})

t.test('a bad line is a 400 naming it, and nothing is written', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"keep"}'])).statusCode, 200)
  const before = countRows(app, 'objects')

  const res = await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}', '{"id":"c",', '{"id":"d"}', '{"id":"e"}'])
  t.equal(res.statusCode, 400)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  const problem = res.json()
  t.match(problem, { status: 400, code: 'VALIDATION_FAILED', line: 3, type: 'urn:bulk-export:problem:validation-failed', title: String })
  t.match(problem.detail, /^line 3: not valid JSON/)
  t.notMatch(res.body, /at .*\.ts:\d+|SQLITE|INSERT/, 'no stack trace or SQL')
  t.equal(countRows(app, 'objects'), before, 'no object was written')
  t.equal(stagedImports(app), 0, 'no stage file is left')
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'a')).statusCode, 404)

  // Each kind of bad line names its line.
  const cases: Array<[string, string | Buffer]> = [
    ['an array', '[1]'], ['null', 'null'], ['a number', '7'], ['missing id', '{"x":1}'], ['numeric id', '{"id":1}'],
    ['empty id', '{"id":""}'], ['long id', JSON.stringify({ id: 'x'.repeat(257) })], ['lone surrogate', '{"id":"\\ud800"}'],
    ['NUL in id', '{"id":"\\u0000"}'], ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d])],
    ['BOM on a later line', Buffer.from('\ufeff{"id":"z"}')],
  ]
  for (const [label, bad] of cases) {
    const body = Buffer.concat([Buffer.from('{"id":"a"}\n\n'), Buffer.isBuffer(bad) ? bad : Buffer.from(bad), Buffer.from('\n{"id":"b"}\n')])
    const r = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': 'application/x-ndjson' }, payload: body })
    t.equal(r.statusCode, 400, `${label}: 400`)
    t.match(r.json(), { code: 'VALIDATION_FAILED', line: 3 }, `${label}: line 3 (blank line 2 counted)`)
  }
  t.equal(countRows(app, 'objects'), before)
  t.equal(stagedImports(app), 0)
})

t.test('a bad line after many staged batches still leaves nothing behind', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const lines = Array.from({ length: 5000 }, (_, i) => userLine(i))
  lines[4499] = '{"id":"u-4499" oops}'
  const res = await importLines(app, u.headers, 'acme', 'users', lines)
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'VALIDATION_FAILED', line: 4500 })
  t.equal(countRows(app, 'objects'), 0)
  t.equal(stagedImports(app), 0, 'the stage file of the failed import is removed')
})

t.test('a failed re-import leaves the collection as it was', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const v1 = ['{"id":"a","v":1}', '{"id":"b","v":1}', '{"id":"c","v":1}']
  t.equal((await importLines(app, u.headers, 'acme', 'users', v1)).statusCode, 200)
  const res = await importLines(app, u.headers, 'acme', 'users', ['{"id":"a","v":2}', '{"id":"b","v":2}', '{"id":"d","v":2}', 'not json'])
  t.equal(res.statusCode, 400)
  t.equal(res.json().line, 4)
  t.equal(countRows(app, 'objects'), 3)
  for (const line of v1) t.equal((await getObject(app, u.headers, 'acme', 'users', JSON.parse(line).id)).body, line)
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'd')).statusCode, 404)
})

t.test('re-importing ids updates them; a repeated id keeps its last line', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  t.same((await importLines(app, u.headers, 'acme', 'users', ['{"id":"a","v":1}', '{"id":"b","v":1}'])).json(), { imported: 2 })
  const again = await importLines(app, u.headers, 'acme', 'users', ['{"id":"a","v":2}', '{"id":"b","v":2,"extra":true}', '{"id":"c","v":2}'])
  t.same(again.json(), { imported: 3 })
  t.equal(countRows(app, 'objects'), 3, 'updated, not duplicated')
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'a')).body, '{"id":"a","v":2}')
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'b')).body, '{"id":"b","v":2,"extra":true}')

  const repeated = await importLines(app, u.headers, 'acme', 'users', ['{"id":"r","v":1}', '{"id":"x"}', '{"id":"r","v":2}', '{"id":"r","v":3}'])
  t.same(repeated.json(), { imported: 4 }, 'repeated ids are counted each time')
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'r')).body, '{"id":"r","v":3}')
  t.equal(countRows(app, 'objects'), 5)

  // Across staging batches too: line 1 and line 4500 share an id.
  const lines = Array.from({ length: 4500 }, (_, i) => userLine(i + 100))
  lines[0] = '{"id":"far","v":"first"}'
  lines[4499] = '{"id":"far","v":"last"}'
  t.same((await importLines(app, u.headers, 'acme', 'users', lines)).json(), { imported: 4500 })
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'far')).body, '{"id":"far","v":"last"}')
  t.equal(countRows(app, 'objects'), 5 + 4499)
})

t.test('blank lines are ignored but counted', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const res = await importLines(app, u.headers, 'acme', 'users', '\n\n{"id":"a"}\r\n   \n\t\r\n  {"id":"b"}  \n\n')
  t.same(res.json(), { imported: 2 })
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'b')).body, '{"id":"b"}', 'surrounding spaces are not stored')
  const bad = await importLines(app, u.headers, 'acme', 'users', '\n\n{"id":"c"}\n\n{"id":')
  t.match(bad.json(), { code: 'VALIDATION_FAILED', line: 5 })
  const bom = await importLines(app, u.headers, 'acme', 'users', '\ufeff{"id":"with-bom"}\n')
  t.same(bom.json(), { imported: 1 }, 'a leading BOM is skipped')
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'with-bom')).body, '{"id":"with-bom"}', 'and not stored')
})

t.test('OBJECT_MAX_BYTES: exactly at the limit is accepted, one byte over is 413', async (t) => {
  const app = await build(t, { OBJECT_MAX_BYTES: '1024' })
  const u = await createUser(app, ['acme'])
  const sized = (id: string, n: number) => {
    const head = `{"id":"${id}","p":"`
    return head + 'x'.repeat(n - head.length - 2) + '"}'
  }
  const exact = sized('exact', 1024)
  t.equal(Buffer.byteLength(exact), 1024)
  const ok = await importLines(app, u.headers, 'acme', 'users', ['{"id":"small"}', exact])
  t.same(ok.json(), { imported: 2 })
  t.equal((await getObject(app, u.headers, 'acme', 'users', 'exact')).body, exact)

  const over = sized('over', 1025)
  const before = countRows(app, 'objects')
  for (const [label, body] of [
    ['in the middle', ['{"id":"n1"}', '{"id":"n2"}', over, '{"id":"n3"}']],
    ['last, without newline', '{"id":"n1"}\n{"id":"n2"}\n' + over],
    ['far past the limit', ['{"id":"n1"}', '{"id":"n2"}', sized('huge', 200_000)]],
  ] as Array<[string, string[] | string]>) {
    const res = await importLines(app, u.headers, 'acme', 'users', body)
    t.equal(res.statusCode, 413, `${label}: 413`)
    t.match(res.json(), { code: 'OBJECT_TOO_LARGE', status: 413, line: 3 }, `${label}: names line 3`)
  }
  // Multi-byte characters count in bytes.
  const multi = JSON.stringify({ id: 'mb', p: 'é'.repeat(510) })
  t.ok(multi.length < 1024 && Buffer.byteLength(multi) > 1024)
  t.match((await importLines(app, u.headers, 'acme', 'users', [multi])).json(), { code: 'OBJECT_TOO_LARGE', line: 1 })
  t.equal(countRows(app, 'objects'), before, 'nothing written')
  t.equal(stagedImports(app), 0)
})

t.test('IMPORT_MAX_BYTES: a larger body is 413 and nothing is written', async (t) => {
  const app = await build(t, { IMPORT_MAX_BYTES: '10000' })
  const u = await createUser(app, ['acme'])
  const line = (i: number) => JSON.stringify({ id: `i-${String(i).padStart(4, '0')}`, p: 'y'.repeat(77) }) // 99 bytes + \n
  const body = (n: number, from = 0) => Array.from({ length: n }, (_, i) => line(from + i) + '\n').join('')
  t.equal(Buffer.byteLength(body(100)), 10000)

  const exact = await importLines(app, u.headers, 'acme', 'users', body(100))
  t.same(exact.json(), { imported: 100 }, 'a body of exactly IMPORT_MAX_BYTES is accepted')

  const over = await importLines(app, u.headers, 'acme', 'other', body(100) + ' ')
  t.equal(over.statusCode, 413, 'one byte over, with Content-Length')
  t.match(over.json(), { code: 'PAYLOAD_TOO_LARGE', status: 413 })
  t.equal(countRows(app, 'objects'), 100)

  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const path = '/api/v1/idm/acme/streamed/import'
  const headers = { ...u.headers, 'content-type': 'application/x-ndjson' }

  // No Content-Length (chunked): the limit is enforced while streaming. This body is small
  // enough to be on the wire whole before the server answers, so the answer is readable.
  const chunks = function * () { for (let i = 0; i < 12; i++) yield Buffer.from(body(10)) } // 12 KB in 1 KB chunks
  const streamed = await send(port, { method: 'POST', path, headers, body: chunks() })
  t.equal(streamed.status, 413, 'chunked body past the limit')
  t.match(JSON.parse(streamed.body), { code: 'PAYLOAD_TOO_LARGE' })
  t.equal(countRows(app, 'objects'), 100, 'nothing written')
  t.equal(stagedImports(app), 0, 'staged lines removed')

  // A long chunked body: the client reads the 413 or sees the connection closed under it
  // (the server need not drain what is past the limit); either way nothing is written.
  const long = function * () { for (let i = 0; i < 5000; i++) yield Buffer.from(body(10)) } // 5 MB
  const outcome = await send(port, { method: 'POST', path, headers, body: long() })
    .then((r) => r.status, (err: NodeJS.ErrnoException) => err.code)
  t.ok(outcome === 413 || outcome === 'EPIPE' || outcome === 'ECONNRESET', `413 or hung up (${outcome})`)
  t.equal(countRows(app, 'objects'), 100, 'nothing written')
  await waitFor(() => stagedImports(app) === 0, 'staged lines to be removed')

  const streamedOk = await send(port, { method: 'POST', path, headers, body: [Buffer.from(body(50)), Buffer.from(body(50, 50))] })
  t.equal(streamedOk.status, 200, 'chunked body of exactly the limit')
  t.same(JSON.parse(streamedOk.body), { imported: 100 })

  // A declared Content-Length past the limit is answered before the body is sent.
  const { req, response } = startRequest(port, { method: 'POST', path: '/api/v1/idm/acme/declared/import', headers: { ...headers, 'content-length': String(2_000_000) } })
  req.write(body(10))
  const declared = await response
  req.destroy()
  t.equal(declared.status, 413)
  t.match(JSON.parse(declared.body), { code: 'PAYLOAD_TOO_LARGE' })
  t.equal(countRows(app, 'objects'), 200)
  t.equal(stagedImports(app), 0)
})

t.test('Content-Type must be NDJSON', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const post = (contentType: string | undefined, payload: string) => app.inject({
    method: 'POST',
    url: '/api/v1/idm/acme/users/import',
    headers: contentType === undefined ? u.headers : { ...u.headers, 'content-type': contentType },
    payload,
  })
  for (const type of ['application/json', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x']) {
    const res = await post(type, '{"id":"a"}\n')
    t.equal(res.statusCode, 415, `${type}: 415`)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.match(res.json(), { code: 'UNSUPPORTED_MEDIA_TYPE', status: 415 })
  }
  t.equal(countRows(app, 'objects'), 0)
  for (const type of ['application/x-ndjson; charset=utf-8', 'application/jsonl', 'Application/X-NDJSON']) {
    const res = await post(type, '{"id":"a"}\n')
    t.same(res.json(), { imported: 1 }, `${type} accepted`)
  }
})

t.test('a body without any object is a 400, as the spec says (the body is required)', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  for (const [what, body] of [['empty', ''], ['only blank lines', '\n\r\n  \n']]) {
    const res = await importLines(app, u.headers, 'acme', 'users', body)
    t.equal(res.statusCode, 400, `${what}: ${res.body}`)
    t.equal(res.json().code, 'VALIDATION_FAILED')
    t.match(res.json().detail, /holds no object/)
  }
  t.equal(stagedImports(app) + countRows(app, 'imports'), 0, 'nothing staged is left')
  // No body and no Content-Type at all: a client mistake, answered as such (not a 500).
  const none = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/import', headers: u.headers })
  t.equal(none.statusCode, 400)
  t.equal(none.json().code, 'VALIDATION_FAILED')
  t.equal(countRows(app, 'objects'), 0)
})

t.test('invalid path parameters, auth and membership', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  await createUser(app, ['beta'], 'other')
  for (const [firmId, type] of [['acme', 'Users'], ['acme', '1users'], ['acme', 'a'.repeat(65)], ['acme', 'us.ers'], ['-acme', 'users'], ['ac.me', 'users'], ['a'.repeat(65), 'users']]) {
    const res = await importLines(app, u.headers, firmId, type, ['{"id":"a"}'])
    t.equal(res.statusCode, 400, `${firmId}/${type}: 400`)
    t.equal(res.json().code, 'VALIDATION_FAILED')
  }
  const forbidden = await importLines(app, u.headers, 'beta', 'users', ['{"id":"a"}'])
  t.equal(forbidden.statusCode, 403)
  t.equal(forbidden.json().code, 'FORBIDDEN')
  const anonymous = await importLines(app, {}, 'acme', 'users', ['{"id":"a"}'])
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.json().code, 'UNAUTHENTICATED')
  const badToken = await importLines(app, { authorization: 'Bearer nope' }, 'acme', 'users', ['{"id":"a"}'])
  t.equal(badToken.statusCode, 401)
  t.equal(countRows(app, 'objects'), 0)
})

t.test('collections are isolated by firm and type', async (t) => {
  const app = await build(t)
  const both = await createUser(app, ['acme', 'beta'], 'both')
  const acmeOnly = await createUser(app, ['acme'], 'acme-only')
  t.equal((await importLines(app, both.headers, 'acme', 'users', ['{"id":"x","where":"acme/users"}', '{"id":"only-users"}'])).statusCode, 200)
  t.equal((await importLines(app, both.headers, 'acme', 'groups', ['{"id":"x","where":"acme/groups"}'])).statusCode, 200)
  t.equal((await importLines(app, both.headers, 'beta', 'users', ['{"id":"x","where":"beta/users"}'])).statusCode, 200)
  t.equal((await getObject(app, both.headers, 'acme', 'users', 'x')).body, '{"id":"x","where":"acme/users"}')
  t.equal((await getObject(app, both.headers, 'acme', 'groups', 'x')).body, '{"id":"x","where":"acme/groups"}')
  t.equal((await getObject(app, both.headers, 'beta', 'users', 'x')).body, '{"id":"x","where":"beta/users"}')
  t.equal((await getObject(app, both.headers, 'acme', 'groups', 'only-users')).statusCode, 404)
  t.equal((await getObject(app, both.headers, 'beta', 'users', 'only-users')).statusCode, 404)
  const foreign = await getObject(app, acmeOnly.headers, 'beta', 'users', 'x')
  t.equal(foreign.statusCode, 403, "another firm's objects are forbidden")
  t.notMatch(foreign.body, /beta\/users"/)
  // A re-import into one collection does not touch a same-id object elsewhere.
  t.equal((await importLines(app, both.headers, 'acme', 'users', ['{"id":"x","where":"changed"}'])).statusCode, 200)
  t.equal((await getObject(app, both.headers, 'beta', 'users', 'x')).body, '{"id":"x","where":"beta/users"}')
  t.equal((await getObject(app, both.headers, 'acme', 'groups', 'x')).body, '{"id":"x","where":"acme/groups"}')
})

t.test('streams a ~20 MB body over a real socket', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const count = 40_000
  const lineOf = (i: number) => userLine(i, 440) // ~520 bytes
  let sent = 0
  async function * body () {
    for (const chunk of ndjsonChunks(count, lineOf)) {
      sent += chunk.length
      yield chunk
    }
  }
  const res = await send(port, { method: 'POST', path: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': 'application/x-ndjson' }, body: body() })
  t.equal(res.status, 200, res.body)
  t.same(JSON.parse(res.body), { imported: count })
  t.ok(sent > 20_000_000, `sent ${sent} bytes`)
  t.equal(countRows(app, 'objects'), count)
  t.equal(stagedImports(app), 0)
  for (const i of [0, 12_345, count - 1]) {
    t.equal((await getObject(app, u.headers, 'acme', 'users', `u-${i}`)).body, lineOf(i))
  }
})

t.test('concurrent imports: one failing does not disturb the other', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const headers = { ...u.headers, 'content-type': 'application/x-ndjson' }
  const count = 10_000
  const lineOf = (i: number) => userLine(i, 100) // ~180 bytes
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  async function * slow () {
    let i = 0
    for (const chunk of ndjsonChunks(count, lineOf, 16 * 1024)) {
      // Hold the rest of the body back (past the first staged batch of 2000 lines)
      // until the other import has failed.
      if (i++ === 40) await gate
      yield chunk
    }
  }
  const first = send(port, { method: 'POST', path: '/api/v1/idm/acme/users/import', headers, body: slow() })
  // The import worker thread may take a while to start on a loaded machine.
  await waitFor(() => stagedImports(app) > 0, 'the first import to stage its lines', 30_000)

  const second = await importLines(app, u.headers, 'acme', 'users', ['{"id":"s1"}', 'bad'])
  t.equal(second.statusCode, 400)
  t.ok(stagedImports(app) > 0, "the failed import left the other's stage file alone")
  release()
  const res = await first
  t.same(JSON.parse(res.body), { imported: count })
  t.equal(countRows(app, 'objects'), count)
  t.equal(stagedImports(app), 0)
})

t.test('a client that disconnects mid-body leaves nothing behind', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': 'application/x-ndjson' }, agent: false })
  req.on('error', () => {})
  // Should a wait below fail, the open request must not keep the file alive until tap's timeout.
  t.teardown(() => { req.destroy() })
  for (const chunk of ndjsonChunks(5000, (i) => userLine(i, 100), 16 * 1024)) {
    if (!req.write(chunk)) await once(req, 'drain')
  }
  await waitFor(() => stagedImports(app) > 0, 'the body to be staged', 30_000)
  req.destroy()
  await waitFor(() => stagedImports(app) === 0, 'the stage file to be removed', 30_000)
  t.equal(countRows(app, 'objects'), 0, 'no object was written')
})

t.test('readers see a collection before or after an import, never in between', async (t) => {
  const app = await build(t)
  const writer = await createUser(app, ['acme'])
  const reader = await createUser(app, ['acme'])
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const count = 30_000
  const lineOf = (v: number) => (i: number) => JSON.stringify({ id: `u-${String(i).padStart(6, '0')}`, v, pad: 'x'.repeat(200) })
  const first = await send(port, { method: 'POST', path: '/api/v1/idm/acme/users/import', headers: { ...writer.headers, 'content-type': 'application/x-ndjson' }, body: ndjsonChunks(count, lineOf(1)) })
  t.equal(first.status, 200, first.body)

  // The second import rewrites every object (v 2) and adds 1,000, in ascending id order;
  // the readers go through the ids in the other direction, so a merge applied in parts
  // would show them a new object beside an old one.
  const state = { importing: true }
  const second = send(port, { method: 'POST', path: '/api/v1/idm/acme/users/import', headers: { ...writer.headers, 'content-type': 'application/x-ndjson' }, body: ndjsonChunks(count + 1000, lineOf(2)) })
    .finally(() => { state.importing = false })
  const seen: number[] = []
  let gets = 0
  let i = count - 1
  while (state.importing) {
    const res = await getObject(app, reader.headers, 'acme', 'users', `u-${String(i).padStart(6, '0')}`)
    seen.push((JSON.parse(res.body) as { v: number }).v)
    gets++
    i = i === 0 ? count - 1 : i - 1
    // inject answers without I/O: let the import's socket be read between reads.
    await new Promise((resolve) => setImmediate(resolve))
  }
  const res = await second
  t.equal(res.status, 200, res.body)
  const flips = seen.filter((v, k) => k > 0 && v !== seen[k - 1]).length
  t.ok(gets > 100, `the readers kept reading while the import ran (${gets} GETs)`)
  t.ok(flips <= 1 && (flips === 0 || seen[0] === 1), `the objects read turned from v 1 to v 2 at one moment, never back (${flips} changes over ${gets} reads)`)

  // An export page taken while an import merges holds one state of the collection.
  const pages = []
  const third = send(port, { method: 'POST', path: '/api/v1/idm/acme/users/import', headers: { ...writer.headers, 'content-type': 'application/x-ndjson' }, body: ndjsonChunks(count + 2000, lineOf(3)) })
  const third$ = { done: false }
  third.finally(() => { third$.done = true }).catch(() => {})
  while (!third$.done || pages.length === 0) {
    const page = await exportPage(app, reader.headers, 'acme', 'users')
    const vs = new Set(page.file.toString().trimEnd().split('\n').map((l) => (JSON.parse(l) as { v: number }).v))
    pages.push({ total: page.result.total, vs: [...vs] })
  }
  t.equal((await third).status, 200)
  t.ok(pages.every((p) => p.vs.length === 1 && p.total === (p.vs[0] === 2 ? count + 1000 : count + 2000)),
    `every page holds one version of the whole collection: ${JSON.stringify(pages)}`)
})
