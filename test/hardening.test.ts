import tap from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { loggerOptions } from '../src/logger.js'
import { ADMIN_TOKEN, createUser, importLines, sqliteOf, stagedImports } from './helpers/build.js'
import { until } from './helpers/child-server.js'
import { buildExportApp, downloadFile, exportPage, httpGet, NO_RATE_LIMITS, postExport } from './helpers/exports.js'

/** Sends raw bytes over a socket and returns all that comes back. */
async function rawRequest (base: string, text: string): Promise<string> {
  const { port } = new URL(base)
  const socket = (await import('node:net')).connect(Number(port), '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.write(text)
  await once(socket, 'close')
  return Buffer.concat(chunks).toString()
}

tap.test('a Host that is not host[:port] is refused before it can reach a link; PUBLIC_URL and TRUST_PROXY decide the links', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  for (const host of ['evil.example/path?x=', 'a b', 'evil.example:80:80', 'evil.example@x', 'x'.repeat(300)]) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/export', headers: { ...u.headers, host } })
    t.equal(res.statusCode, 400, `Host ${JSON.stringify(host)}: ${res.statusCode}`)
    t.match(res.json().detail, /Host header is not a valid host\[:port\]/)
  }
  t.equal(sqliteOf(app).prepare('SELECT count(*) FROM export_jobs').pluck().get(), 0, 'nothing was started')
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const noHost = await rawRequest(base, 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n')
  t.match(noHost, /^HTTP\/1\.1 400/, 'an HTTP/1.1 request without a Host is a 400')
  for (const host of ['export.internal:8443', '10.1.2.3', '[::1]:3000', 'localhost']) {
    const res = await postExport(app, { ...u.headers, host }, 'acme', 'users')
    t.equal(res.statusCode, 200, host)
    t.match(res.headers.location, new RegExp(`^http://${host.replace(/[[\].]/g, '\\$&')}/api/v1/request/`), `the Location names ${host}`)
    await app.inject({ method: 'DELETE', url: `/api/v1/request/${res.json().requestId}`, headers: u.headers })
  }

  const proxied = await buildExportApp(t, { TRUST_PROXY: '127.0.0.1' })
  const v = await createUser(proxied, ['acme'])
  const headers = { ...v.headers, 'x-forwarded-host': 'export.example.com', 'x-forwarded-proto': 'https' }
  const res = await postExport(proxied, headers, 'acme', 'users')
  t.match(res.headers.location, /^https:\/\/export\.example\.com\/api\/v1\/request\//, 'behind a trusted proxy, the host the client used')
  const bad = await postExport(proxied, { ...v.headers, 'x-forwarded-host': 'evil.example/x' }, 'acme', 'users')
  t.equal(bad.statusCode, 400, 'a forwarded Host is checked the same way')
  const untrusted = await postExport(app, { ...u.headers, 'x-forwarded-host': 'export.example.com' }, 'acme', 'users')
  t.match(untrusted.headers.location, /^http:\/\/localhost:80\//, 'without TRUST_PROXY, X-Forwarded-Host is ignored')
})

tap.test('downloads: preconditions answer 412, and Range means what RFC 9110 says', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: `u-${i}`, pad: 'x'.repeat(20) })))).statusCode, 200)
  const { result, file } = await exportPage(app, u.headers, 'acme', 'users')
  const size = file.length
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const url = result.fileUrl.replace(/^http:\/\/[^/]+/, base)

  for (const headers of [{ 'if-match': '"not-this-one"' }, { 'if-unmodified-since': 'Mon, 01 Jan 2001 00:00:00 GMT' }] as Array<Record<string, string>>) {
    const res = await httpGet(url, headers)
    t.equal(res.status, 412, JSON.stringify(headers))
    t.equal(JSON.parse(res.body.toString()).code, 'PRECONDITION_FAILED')
  }
  const etag = (await httpGet(url)).headers.etag as string
  t.equal((await httpGet(url, { 'if-match': etag })).status, 200, 'the current ETag passes')

  const longSuffix = await httpGet(url, { range: `bytes=-${size + 1000}` })
  t.equal(longSuffix.status, 206, 'a suffix longer than the file: the whole file')
  t.equal(longSuffix.headers['content-range'], `bytes 0-${size - 1}/${size}`)
  t.same(longSuffix.body, file)
  const suffix = await httpGet(url, { range: 'bytes=-10' })
  t.equal(suffix.status, 206)
  t.same(suffix.body, file.subarray(size - 10), 'a shorter suffix: the last bytes')
  for (const range of ['bytes=1e3-', 'bytes=0x10-', 'bytes=5-2', 'items=0-5', 'bytes=', 'bytes=abc']) {
    const res = await httpGet(url, { range })
    t.equal(res.status, 200, `${range}: not a byte range, so ignored`)
    t.same(res.body, file)
  }
  t.equal((await httpGet(url, { range: `bytes=${size}-` })).status, 416, 'a range past the end is still a 416')
  t.equal((await httpGet(url, { range: 'bytes=-0' })).status, 416, 'and so is an empty suffix')
  t.equal((await downloadFile(app, result.fileUrl, { range: 'bytes=0-9' })).statusCode, 206, 'a plain range still works')
})

tap.test('gzip downloads are what the spec says: Content-Encoding gzip, chunked, no Content-Length', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', Array.from({ length: 200 }, (_, i) => JSON.stringify({ id: `u-${i}`, pad: 'x'.repeat(50) })))).statusCode, 200)
  const { result } = await exportPage(app, u.headers, 'acme', 'users')
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await httpGet(result.fileUrl.replace(/^http:\/\/[^/]+/, base), { 'accept-encoding': 'gzip' })
  t.equal(res.headers['content-encoding'], 'gzip')
  t.equal(res.headers['content-length'], undefined)
  t.equal(res.headers['transfer-encoding'], 'chunked')
  t.match(res.headers.vary, /Accept-Encoding/i)
  const spec = (await app.inject({ url: '/openapi.json' })).json()
  const headers = spec.paths['/api/v1/files/{requestId}'].get.responses['200'].headers
  t.match(headers['Content-Length'].description, /absent when the body is gzip-compressed/, 'and the spec says so')
  t.ok(headers['Content-Encoding'], 'the spec lists Content-Encoding')
})

tap.test('object ids count characters (code points) everywhere: 256 of them, astral or not', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const longest = '😀'.repeat(256)
  const imported = await importLines(app, u.headers, 'acme', 'users', [JSON.stringify({ id: longest })])
  t.equal(imported.statusCode, 200, '256 astral characters import')
  const read = await app.inject({ url: `/api/v1/idm/acme/users/${encodeURIComponent(longest)}`, headers: u.headers })
  t.equal(read.statusCode, 200, 'and read back by their path')
  t.equal(read.json().id, longest)
  const put = await app.inject({ method: 'PUT', url: `/api/v1/idm/acme/users/${encodeURIComponent('é'.repeat(256))}`, headers: u.headers, payload: { id: 'é'.repeat(256) } })
  t.equal(put.statusCode, 201)
  const tooLong = '😀'.repeat(257)
  t.equal((await importLines(app, u.headers, 'acme', 'users', [JSON.stringify({ id: tooLong })])).statusCode, 400, '257 do not import')
  t.equal((await app.inject({ url: `/api/v1/idm/acme/users/${encodeURIComponent(tooLong)}`, headers: u.headers })).statusCode, 400, 'nor pass the path check')
  const { file } = await exportPage(app, u.headers, 'acme', 'users')
  t.ok(file.toString().includes(longest), 'and export whole')
})

tap.test('a client that drops an import mid-body is its own doing: logged at info, not as a server error', async (t) => {
  const lines: Array<{ level: number, msg: string, code?: string }> = []
  const config = loadConfig({ DATA_DIR: t.testdir(), ADMIN_TOKEN, LOG_LEVEL: 'info', ...NO_RATE_LIMITS })
  const app = await buildApp(config, { logger: { ...(loggerOptions(config) as object), stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  t.teardown(() => app.close())
  const u = await createUser(app, ['acme'])
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const req = http.request(`${base}/api/v1/idm/acme/users/import`, { method: 'POST', headers: { ...u.headers, 'content-type': 'application/x-ndjson' }, agent: false })
  req.on('error', () => {})
  t.teardown(() => { req.destroy() })
  for (let i = 0; i < 2000; i++) {
    if (!req.write(JSON.stringify({ id: `u-${i}`, pad: 'x'.repeat(200) }) + '\n')) await once(req, 'drain')
  }
  // The body is being read (its stage file exists) when the client goes.
  t.equal(await until('the import to be staged', () => stagedImports(app) || undefined), 1, 'the import was under way')
  req.destroy()
  const deadline = Date.now() + 30_000
  while (!lines.some((l) => l.msg === 'request refused' || l.msg === 'request failed') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(lines.filter((l) => l.level >= 50).map((l) => l.msg), [], 'no error line')
  t.ok(lines.some((l) => l.msg === 'request refused' && l.code === 'VALIDATION_FAILED' && l.level === 30), 'an info line says the request was refused')
  t.equal(sqliteOf(app).prepare('SELECT count(*) FROM objects').pluck().get(), 0, 'nothing was imported')
})

tap.test('a forwarded scheme must be http or https; the spec, which names the host, is never cached', async (t) => {
  const app = await buildExportApp(t, { TRUST_PROXY: '127.0.0.1' })
  const u = await createUser(app, ['acme'])
  for (const proto of ['https://evil.example/#', 'javascript', 'ftp']) {
    const res = await postExport(app, { ...u.headers, 'x-forwarded-proto': proto }, 'acme', 'users')
    t.equal(res.statusCode, 400, proto)
    t.match(res.json().detail, /X-Forwarded-Proto must be http or https/)
  }
  const spec = await app.inject({ url: '/openapi.json', headers: { 'x-forwarded-proto': 'https://evil.example/#' } })
  t.equal(spec.statusCode, 400, 'nor does it reach the spec')
  for (const url of ['/openapi.json', '/openapi.yaml', '/docs/json']) {
    t.equal((await app.inject({ url })).headers['cache-control'], 'no-store', `${url} is not cached`)
  }
})

tap.test('Host names with _ (container service names) are fine; a port past 65535 is not', async (t) => {
  const app = await buildExportApp(t)
  for (const host of ['bulk_export:3000', 'my_svc', 'node~1.internal:8080']) {
    t.equal((await app.inject({ url: '/healthz', headers: { host } })).statusCode, 200, host)
  }
  t.equal((await app.inject({ url: '/healthz', headers: { host: 'localhost:99999' } })).statusCode, 400, 'port 99999')
})

tap.test('downloads vary on Accept-Encoding whatever the answer; a 304 is not encoded; an empty file ignores ranges', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', Array.from({ length: 50 }, (_, i) => JSON.stringify({ id: `u-${i}`, pad: 'x'.repeat(50) })))).statusCode, 200)
  const { result } = await exportPage(app, u.headers, 'acme', 'users')
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const url = result.fileUrl.replace(/^http:\/\/[^/]+/, base)
  const plain = await httpGet(url)
  t.match(plain.headers.vary, /Accept-Encoding/i, '200')
  t.match((await httpGet(url, { range: 'bytes=0-9' })).headers.vary, /Accept-Encoding/i, '206')
  const notModified = await httpGet(url, { 'if-none-match': plain.headers.etag as string, 'accept-encoding': 'gzip' })
  t.equal(notModified.status, 304)
  t.equal(notModified.headers['content-encoding'], undefined, 'a 304 says no encoding')

  const empty = await exportPage(app, u.headers, 'acme', 'nothing')
  t.equal(empty.result.total, 0)
  const emptyUrl = empty.result.fileUrl.replace(/^http:\/\/[^/]+/, base)
  for (const range of ['bytes=-10', 'bytes=0-']) {
    const res = await httpGet(emptyUrl, { range })
    t.equal(res.status, 200, `${range} on an empty file: the whole (empty) file`)
    t.equal(res.body.length, 0)
  }
})

tap.test('remaining is an estimate, but never 0 while a next cursor exists', async (t) => {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '2' })
  const u = await createUser(app, ['acme'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', Array.from({ length: 6 }, (_, i) => JSON.stringify({ id: `u-${i}` })))).statusCode, 200)
  const first = await exportPage(app, u.headers, 'acme', 'users')
  t.equal(first.result.remaining, 4)
  // Objects before the cursor disappear: the count-based estimate undercounts.
  for (const id of ['u-0', 'u-1']) await app.inject({ method: 'DELETE', url: `/api/v1/idm/acme/users/${id}`, headers: u.headers })
  const second = await exportPage(app, u.headers, 'acme', 'users', first.result.nextCursor)
  t.type(second.result.nextCursor, 'string', 'u-4 and u-5 still follow')
  t.ok(second.result.remaining! >= 1, `so remaining is at least 1 (${second.result.remaining})`)
  const third = await exportPage(app, u.headers, 'acme', 'users', second.result.nextCursor)
  t.equal(third.result.nextCursor, null)
  t.equal(third.result.remaining, 0, '0 exactly on the last page')
})
