import tap, { type Test } from 'tap'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { admin, build, createUser, importLines, sqliteOf, stagedImports } from './helpers/build.js'
import { postExport, readStatus, startExport, waitForJob } from './helpers/exports.js'

function count (app: FastifyInstance, table: string): number {
  return sqliteOf(app).prepare(`SELECT count(*) FROM ${table}`).pluck(true).get() as number
}

/** A problem+json answer with this status and code. */
function isProblem (t: Test, res: LightMyRequestResponse, status: number, code: string, what: string): void {
  t.equal(res.statusCode, status, `${what}: ${res.statusCode} ${res.body.slice(0, 200)}`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: problem+json`)
  const body = res.json()
  t.equal(body.code, code, `${what}: code ${code}`)
  t.equal(body.status, status, `${what}: status in the body`)
}

/** Issues another token for a user through the admin API. */
async function secondToken (app: FastifyInstance, userId: string): Promise<Record<string, string>> {
  const res = await app.inject({ method: 'POST', url: `/api/v1/admin/users/${userId}/tokens`, headers: admin })
  if (res.statusCode !== 201) throw new Error(`createUserToken: ${res.statusCode} ${res.body}`)
  return { authorization: `Bearer ${res.json().token}` }
}

function checkRetryAfter (t: Test, res: LightMyRequestResponse, what: string): void {
  const retryAfter = res.headers['retry-after']
  t.match(retryAfter, /^\d+$/, `${what}: an integer Retry-After (${retryAfter})`)
  t.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 60, `${what}: within the minute`)
}

/** Sends raw bytes over a socket and returns everything the server sent back. */
async function rawExchange (base: string, request: string): Promise<string> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // The server may reset after answering; what it sent first is what counts.
      if (err.code === 'ECONNRESET' && chunks.length) resolve(Buffer.concat(chunks).toString('utf8'))
      else reject(err)
    })
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')))
    socket.end(request)
  })
}

tap.test('status polling is rate limited per token', async (t) => {
  const app = await build(t, { RATE_LIMIT_POLLS_PER_MINUTE: '5' })
  const u = await createUser(app, ['acme'])
  const requestId = await startExport(app, u.headers, 'acme', 'users')

  for (let i = 1; i <= 5; i++) {
    const res = await readStatus(app, u.headers, requestId)
    t.equal(res.statusCode, 200, `read ${i} of 5 is allowed`)
  }
  const limited = await readStatus(app, u.headers, requestId)
  isProblem(t, limited, 429, 'RATE_LIMITED', 'the 6th read within a minute')
  checkRetryAfter(t, limited, 'the 6th read')
  t.notOk('requestId' in limited.json() && limited.json().status === 'Completed', 'no status leaks through')

  const other = await secondToken(app, u.userId)
  const allowed = await readStatus(app, other, requestId)
  t.equal(allowed.statusCode, 200, 'another token of the same user has its own budget')
  t.equal(allowed.json().requestId, requestId)
  t.equal((await readStatus(app, u.headers, requestId)).statusCode, 429, 'while the first is still limited')

  const stranger = await createUser(app, ['acme'], 'stranger')
  t.equal((await app.inject({ url: '/api/v1/idm/acme/users/x', headers: u.headers })).statusCode, 404, 'other operations are not counted as polls')
  t.equal((await readStatus(app, stranger.headers, requestId)).statusCode, 404, 'another user is not limited by it')
})

tap.test('export starts are rate limited per token', async (t) => {
  const app = await build(t, { RATE_LIMIT_STARTS_PER_MINUTE: '2' })
  const u = await createUser(app, ['acme'])
  for (let i = 1; i <= 2; i++) {
    const requestId = await startExport(app, u.headers, 'acme', 'users')
    await waitForJob(app, u.headers, requestId)
    t.pass(`start ${i} of 2 is allowed`)
  }
  const jobs = count(app, 'export_jobs')
  const limited = await postExport(app, u.headers, 'acme', 'users')
  isProblem(t, limited, 429, 'RATE_LIMITED', 'the 3rd start within a minute')
  checkRetryAfter(t, limited, 'the 3rd start')
  t.equal(count(app, 'export_jobs'), jobs, 'no job was created')

  const other = await secondToken(app, u.userId)
  const allowed = await postExport(app, other, 'acme', 'users')
  t.equal(allowed.statusCode, 200, `another token of the same user may start: ${allowed.body}`)
  await waitForJob(app, other, allowed.json().requestId)
})

tap.test('URLs longer than MAX_URL_BYTES: 414', async (t) => {
  const app = await build(t)
  t.equal(app.testConfig.maxUrlBytes, 8192, 'the default')
  const near = `/healthz?pad=${'a'.repeat(8192 - 13)}`
  t.equal(near.length, 8192)
  t.equal((await app.inject({ url: near })).statusCode, 200, 'exactly the limit is fine')
  isProblem(t, await app.inject({ url: `${near}a` }), 414, 'URI_TOO_LONG', 'one byte over')
  isProblem(t, await app.inject({ url: `/api/v1/idm/acme/users/${'x'.repeat(20_000)}` }), 414, 'URI_TOO_LONG', 'a long path')

  const small = await build(t, { MAX_URL_BYTES: '300' })
  const u = await createUser(small, ['acme'])
  const res = await small.inject({ url: `/api/v1/idm/acme/users/${'x'.repeat(300)}`, headers: u.headers })
  isProblem(t, res, 414, 'URI_TOO_LONG', 'MAX_URL_BYTES=300')
  t.match(res.json().detail, /MAX_URL_BYTES/, 'the detail names the setting')
  t.equal((await small.inject({ url: '/api/v1/idm/acme/users/x', headers: u.headers })).statusCode, 404, 'a short URL still works')
})

tap.test('request headers over 16 KiB on a real socket: 431 problem+json', async (t) => {
  const app = await build(t)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })

  const big = await rawExchange(base, `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: ${'a'.repeat(20 * 1024)}\r\nConnection: close\r\n\r\n`)
  const [head, body] = big.split('\r\n\r\n')
  t.match(head, /^HTTP\/1\.1 431 /, `status line: ${head.split('\r\n')[0]}`)
  t.match(head, /\r\ncontent-type: application\/problem\+json/i, 'problem+json')
  const problem = JSON.parse(body)
  t.equal(problem.status, 431)
  t.equal(problem.code, 'HEADERS_TOO_LARGE')
  t.type(problem.type, 'string')
  t.type(problem.detail, 'string')

  const fine = await rawExchange(base, `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: ${'a'.repeat(8 * 1024)}\r\nConnection: close\r\n\r\n`)
  t.match(fine, /^HTTP\/1\.1 200 /, '8 KiB of headers are fine')

  const garbage = await rawExchange(base, 'NOT HTTP AT ALL\r\n\r\n')
  t.match(garbage, /^HTTP\/1\.1 400 /, 'a malformed request is a 400')
  t.match(garbage, /"code":"VALIDATION_FAILED"/, 'as a problem too')
})

tap.test('JSON bodies over their limit: 413', async (t) => {
  const app = await build(t, { OBJECT_MAX_BYTES: '1024' })
  const u = await createUser(app, ['acme'])
  const json = { 'content-type': 'application/json' }
  const before = { users: count(app, 'users'), jobs: count(app, 'export_jobs'), objects: count(app, 'objects') }

  isProblem(t, await app.inject({
    method: 'POST',
    url: '/api/v1/admin/users',
    headers: { ...admin, ...json },
    payload: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024), firms: ['acme'] }),
  }), 413, 'PAYLOAD_TOO_LARGE', 'createUser with 2 MiB')
  isProblem(t, await app.inject({
    method: 'POST',
    url: '/api/v1/idm/acme/users/export',
    headers: { ...u.headers, ...json },
    payload: JSON.stringify({ cursor: 'c'.repeat(1024 * 1024 + 1) }),
  }), 413, 'PAYLOAD_TOO_LARGE', 'startExport over 1 MiB')
  isProblem(t, await app.inject({
    method: 'PUT',
    url: '/api/v1/idm/acme/users/a',
    headers: { ...u.headers, ...json },
    payload: JSON.stringify({ id: 'a', pad: 'p'.repeat(100_000) }),
  }), 413, 'PAYLOAD_TOO_LARGE', 'putObject body far over twice OBJECT_MAX_BYTES')
  const over = await app.inject({
    method: 'PUT',
    url: '/api/v1/idm/acme/users/a',
    headers: { ...u.headers, ...json },
    payload: JSON.stringify({ id: 'a', pad: 'p'.repeat(1024) }),
  })
  isProblem(t, over, 413, 'OBJECT_TOO_LARGE', 'putObject whose object is over OBJECT_MAX_BYTES')
  t.match(over.json().detail, /OBJECT_MAX_BYTES/)
  t.same({ users: count(app, 'users'), jobs: count(app, 'export_jobs'), objects: count(app, 'objects') }, before, 'nothing written')

  const pretty = JSON.stringify({ id: 'a', pad: 'p'.repeat(900) }, null, 40).replace('{', `{${' '.repeat(600)}`)
  t.ok(pretty.length > 1024, 'a pretty-printed body over the limit')
  const ok = await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/a', headers: { ...u.headers, ...json }, payload: pretty })
  t.equal(ok.statusCode, 201, 'whose compact object is within it is stored')
  t.ok(ok.rawPayload.length <= 1024)
})

tap.test('NDJSON imports: lines over OBJECT_MAX_BYTES and bodies over IMPORT_MAX_BYTES are 413s', async (t) => {
  const app = await build(t, { OBJECT_MAX_BYTES: '1024', IMPORT_MAX_BYTES: '65536' })
  const u = await createUser(app, ['acme'])
  const line = (id: string, bytes: number) => {
    const base = JSON.stringify({ id, pad: '' })
    return JSON.stringify({ id, pad: 'p'.repeat(bytes - base.length) })
  }
  t.equal(Buffer.byteLength(line('x', 1024)), 1024)

  const exact = await importLines(app, u.headers, 'acme', 'users', [line('a', 1024), `   ${line('b', 1024)}\t\r`])
  t.equal(exact.statusCode, 200, `a line of exactly OBJECT_MAX_BYTES (spaces around it aside) is fine: ${exact.body}`)
  const objects = count(app, 'objects')

  const tooBig = await importLines(app, u.headers, 'acme', 'users', [line('c', 100), line('d', 100), line('e', 1025), line('f', 100)])
  isProblem(t, tooBig, 413, 'OBJECT_TOO_LARGE', 'a 1025-byte line')
  t.equal(tooBig.json().line, 3, 'the problem names the line')
  t.match(tooBig.json().detail, /line 3/)

  // Streamed without a Content-Length: the long line is refused before it is all read.
  const stream = Readable.from([Buffer.from(line('g', 100) + '\n'), Buffer.from('{"id":"h","pad":"'), Buffer.alloc(30_000, 0x70), Buffer.from('"}\n')])
  const streamed = await app.inject({
    method: 'POST', url: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': 'application/x-ndjson' }, payload: stream,
  })
  isProblem(t, streamed, 413, 'OBJECT_TOO_LARGE', 'a 30 KB line, streamed')
  t.equal(streamed.json().line, 2)

  const body = Array.from({ length: 100 }, (_, i) => line(`big-${i}`, 1000)).join('\n') + '\n'
  t.ok(body.length > 65536)
  isProblem(t, await importLines(app, u.headers, 'acme', 'users', body), 413, 'PAYLOAD_TOO_LARGE', 'a body over IMPORT_MAX_BYTES (Content-Length)')
  const chunked = await app.inject({
    method: 'POST',
    url: '/api/v1/idm/acme/users/import',
    headers: { ...u.headers, 'content-type': 'application/x-ndjson' },
    payload: Readable.from(body.match(/[^]{1,4096}/g)!.map((s) => Buffer.from(s))),
  })
  isProblem(t, chunked, 413, 'PAYLOAD_TOO_LARGE', 'a body over IMPORT_MAX_BYTES (streamed)')
  t.match(chunked.json().detail, /IMPORT_MAX_BYTES/)

  t.equal(count(app, 'objects'), objects, 'nothing written by the refused imports')
  t.equal(stagedImports(app), 0, 'and nothing left staged')
  t.equal((await app.inject({ url: '/api/v1/idm/acme/users/c', headers: u.headers })).statusCode, 404, 'not even the lines before the bad one')
})

tap.test('limits are sane by default and documented', async (t) => {
  const app = await build(t)
  const c = app.testConfig
  t.equal(c.rateLimitPollsPerMinute, 6000)
  t.equal(c.rateLimitStartsPerMinute, 600)
  t.equal(c.objectMaxBytes, 1024 * 1024)
  t.equal(c.importMaxBytes, 1024 * 1024 * 1024)
  const { readFileSync } = await import('node:fs')
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  for (const name of ['RATE_LIMIT_POLLS_PER_MINUTE', 'RATE_LIMIT_STARTS_PER_MINUTE', 'MAX_URL_BYTES', 'OBJECT_MAX_BYTES', 'IMPORT_MAX_BYTES']) {
    t.ok(readme.includes(name), `README documents ${name}`)
  }
})
