import tap from 'tap'
import { createHash } from 'node:crypto'
import { readdirSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { CHUNK_BYTES } from '../src/files/file-body.js'
import { createUser, filesDirOf, importLines } from './helpers/build.js'
import { buildExportApp, fdsSettled, httpGet, liveResult, openFds, slowGet, startExport, waitForJob, type JobStatusBody } from './helpers/exports.js'

function sha256 (bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** A listening app with a completed export of 60 objects (a few KiB, so gzip applies). */
async function setup (t: Parameters<typeof buildExportApp>[0]) {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const lines = Array.from({ length: 60 }, (_, i) =>
    JSON.stringify({ id: `u-${String(i).padStart(3, '0')}`, userName: `user${i}@example.com`, name: `Zoë Ünïcode ${i} 日本`, groups: ['a', 'b', 'c'] }))
  const res = await importLines(app, u.headers, 'acme', 'users', lines)
  if (res.statusCode !== 200) throw new Error(res.body)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  await waitForJob(app, u.headers, requestId)
  // Read over the socket: the fileUrl is built from the Host the client used.
  const status = await statusOverHttp(base, u.headers, requestId)
  if (status.status !== 'Completed' || !status.result) throw new Error(JSON.stringify(status))
  const expected = Buffer.from(lines.map((l) => l + '\n').join(''), 'utf8')
  return { app, u, base, requestId, result: liveResult(status), expected }
}

async function statusOverHttp (base: string, headers: Record<string, string>, requestId: string): Promise<JobStatusBody & { cacheControl: string | null }> {
  const res = await fetch(`${base}/api/v1/request/${requestId}`, { headers })
  if (res.status !== 200) throw new Error(`getRequest: ${res.status} ${await res.text()}`)
  return { ...await res.json() as JobStatusBody, cacheControl: res.headers.get('cache-control') }
}

// The read-only tests share one app: its first job waits for a worker thread to start.
let sharedSetup: ReturnType<typeof setup> | undefined
function shared (): ReturnType<typeof setup> {
  sharedSetup ??= setup(tap)
  return sharedSetup
}

/** The fileUrl with one query parameter replaced. */
function withParam (fileUrl: string, name: string, value: string): string {
  const url = new URL(fileUrl)
  url.searchParams.set(name, value)
  return url.href
}

tap.test('the fileUrl is absolute and downloads without a token', async (t) => {
  const { base, result, expected } = await shared()
  t.ok(result.fileUrl.startsWith(`${base}/api/v1/files/`), `${result.fileUrl} is absolute, on this server`)

  const res = await httpGet(result.fileUrl)
  t.equal(res.status, 200, res.body.toString().slice(0, 300))
  t.match(res.headers['content-type'], /^application\/x-ndjson/)
  t.equal(res.headers['content-length'], String(result.bytes), 'Content-Length is the file size')
  t.equal(res.headers['content-encoding'], undefined, 'not compressed when not asked for')
  t.type(res.headers.etag, 'string', 'an ETag')
  t.same(res.body, expected, 'the file is the imported lines')
  t.equal(sha256(res.body), result.sha256)

  const again = await httpGet(result.fileUrl, { 'if-none-match': String(res.headers.etag) })
  t.equal(again.status, 304, 'a conditional request with the ETag is not sent again')
})

tap.test('Range requests resume a download', async (t) => {
  const { result, expected } = await shared()
  const size = expected.length

  const head = await httpGet(result.fileUrl, { range: 'bytes=0-9' })
  t.equal(head.status, 206)
  t.same(head.body, expected.subarray(0, 10), 'the first 10 bytes')
  t.equal(head.headers['content-range'], `bytes 0-9/${size}`)
  t.equal(head.headers['content-length'], '10')

  const mid = Math.floor(size / 2) + 3
  const first = await httpGet(result.fileUrl, { range: `bytes=0-${mid - 1}` })
  const rest = await httpGet(result.fileUrl, { range: `bytes=${mid}-` })
  t.equal(first.status, 206)
  t.equal(rest.status, 206)
  t.equal(rest.headers['content-range'], `bytes ${mid}-${size - 1}/${size}`)
  t.same(Buffer.concat([first.body, rest.body]), expected, 'the two parts make the whole file')

  const gzRange = await httpGet(result.fileUrl, { range: `bytes=${mid}-`, 'accept-encoding': 'gzip' })
  t.equal(gzRange.status, 206, 'a range with Accept-Encoding: gzip')
  t.same(gzRange.body, expected.subarray(mid), 'is the plain bytes of the file at those offsets')

  const beyond = await httpGet(result.fileUrl, { range: `bytes=${size + 10}-` })
  t.equal(beyond.status, 416, 'a range past the end')
})

tap.test('gzip for clients that accept it', async (t) => {
  const { result, expected } = await shared()
  const res = await httpGet(result.fileUrl, { 'accept-encoding': 'gzip' })
  t.equal(res.status, 200)
  t.equal(res.headers['content-encoding'], 'gzip')
  t.match(res.headers['content-type'], /^application\/x-ndjson/)
  t.ok(res.body.length < expected.length, `compressed (${res.body.length} < ${expected.length})`)
  t.same(gunzipSync(res.body), expected, 'gunzipped, the file')
})

tap.test('altered links are refused', async (t) => {
  const { app, base, requestId, result } = await shared()
  const url = new URL(result.fileUrl)
  const sig = url.searchParams.get('sig')!
  const expires = url.searchParams.get('expires')!
  const flipped = sig.slice(0, 5) + (sig[5] === 'A' ? 'B' : 'A') + sig.slice(6)

  for (const [why, href] of [
    ['a changed signature', withParam(result.fileUrl, 'sig', flipped)],
    ['another last character of the signature', withParam(result.fileUrl, 'sig', sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A'))],
    ['a later expiry', withParam(result.fileUrl, 'expires', String(Number(expires) + 1))],
    ['an earlier expiry', withParam(result.fileUrl, 'expires', String(Number(expires) - 1))],
    ['the signature of another request', `${base}/api/v1/files/export-00000000-0000-4000-8000-000000000000?expires=${expires}&sig=${sig}`],
  ] as const) {
    const res = await httpGet(href)
    t.equal(res.status, 403, why)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${why}: a problem`)
    t.equal(JSON.parse(res.body.toString()).code, 'INVALID_SIGNATURE', why)
  }
  const noSig = await httpGet(`${base}/api/v1/files/${requestId}?expires=${expires}`)
  t.equal(noSig.status, 400, 'a link without a signature')

  const past = Math.floor(Date.now() / 1000) - 60
  const expired = await httpGet(`${base}/api/v1/files/${requestId}?expires=${past}&sig=${app.services.signer.signDownload(requestId, past)}`)
  t.equal(expired.status, 410, 'a genuine link whose time has passed')
  t.equal(JSON.parse(expired.body.toString()).code, 'FILE_EXPIRED')

  t.equal((await httpGet(result.fileUrl)).status, 200, 'the genuine link still works')
})

tap.test('a removed file is 410; every status read hands out a working link', async (t) => {
  const { app, u, base, requestId, result, expected } = await setup(t)
  t.ok(Number(new URL(result.fileUrl).searchParams.get('expires')) * 1000 <= Date.parse(result.expiresAt),
    'the link expires no later than the file')

  const reads = [result.fileUrl]
  for (let i = 0; i < 2; i++) {
    const status = await statusOverHttp(base, u.headers, requestId)
    t.equal(status.cacheControl, 'no-store', 'status answers are not cached (the link is fresh)')
    reads.push(liveResult(status).fileUrl)
  }
  for (const href of reads) {
    const res = await httpGet(href)
    t.equal(res.status, 200, href)
    t.same(res.body, expected)
  }

  const files = readdirSync(filesDirOf(app))
  t.same(files.filter((f) => f.endsWith('.tmp')), [], 'no temporary file is left behind')
  t.ok(files.some((f) => f.includes(requestId)), 'the export file is in filesDir')

  for (const f of files.filter((name) => name.includes(requestId))) rmSync(join(filesDirOf(app), f))
  const gone = await httpGet(result.fileUrl)
  t.equal(gone.status, 410, 'the file was removed from disk')
  t.equal(JSON.parse(gone.body.toString()).code, 'FILE_EXPIRED')
})

tap.test('a file of several read buffers downloads exactly: whole, in ranges across buffers, gzip, to a slow reader and to one that hangs up', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  // ~3.4 MB: three and a bit of the 1 MiB buffers a body is read into.
  const filler = 'y'.repeat(640)
  const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ id: `u-${String(i).padStart(5, '0')}`, filler }))
  t.equal((await importLines(app, u.headers, 'acme', 'users', lines)).statusCode, 200)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  await waitForJob(app, u.headers, requestId)
  const { fileUrl } = liveResult(await statusOverHttp(base, u.headers, requestId))
  const expected = Buffer.from(lines.map((l) => l + '\n').join(''), 'utf8')
  t.ok(expected.length > 3 * CHUNK_BYTES, `${expected.length} bytes`)

  const fdsBefore = openFds()
  const whole = await httpGet(fileUrl)
  t.equal(whole.headers['content-length'], String(expected.length))
  t.ok(whole.body.equals(expected), 'whole')
  const from = CHUNK_BYTES - 100
  const to = 2 * CHUNK_BYTES + 100
  const part = await httpGet(fileUrl, { range: `bytes=${from}-${to}` })
  t.equal(part.status, 206)
  t.ok(part.body.equals(expected.subarray(from, to + 1)), 'a range across two buffer boundaries')
  const gz = await httpGet(fileUrl, { 'accept-encoding': 'gzip' })
  t.equal(gz.headers['content-encoding'], 'gzip')
  t.ok(gunzipSync(gz.body).equals(expected), 'gzip, gunzipped')
  const head = await new Promise<{ status: number, length: string | undefined, body: number }>((resolve, reject) => {
    const req = httpRequest(fileUrl, { method: 'HEAD', agent: false }, (res) => {
      let body = 0
      res.on('data', (c: Buffer) => { body += c.length })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, length: res.headers['content-length'], body }))
    })
    req.on('error', reject)
    req.end()
  })
  t.same(head, { status: 200, length: String(expected.length), body: 0 }, 'HEAD: the size, no body')
  t.equal((await httpGet(fileUrl, { 'if-none-match': String(whole.headers.etag) })).status, 304)
  t.equal((await httpGet(fileUrl, { 'if-match': '"other"' })).status, 412)
  t.equal((await httpGet(fileUrl, { range: `bytes=${expected.length + 1}-` })).status, 416)
  t.ok(await fdsSettled(fdsBefore) <= fdsBefore, 'whole, ranged, gzip, HEAD, 304, 412 and 416 answers leave no file open')

  // A reader slower than the disk: the socket's buffers fill and the body waits on them.
  const slow = await slowGet(fileUrl)
  t.ok(slow.equals(expected), 'a slow reader gets every byte')

  // Clients that hang up after the first bytes: the server stays well.
  const fds = openFds()
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(fileUrl, { agent: false }, (res) => {
        res.once('data', () => { req.destroy(); resolve() })
      })
      req.on('error', (err) => { if (!req.destroyed) reject(err) })
      req.end()
    })
  }
  t.ok(await fdsSettled(fds) <= fds, 'no file is left open by the downloads cut short')
  t.ok((await httpGet(fileUrl)).body.equals(expected), 'and the next download is whole')
})

tap.test('no temporary files remain after several jobs', async (t) => {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '3' })
  const u = await createUser(app, ['acme'])
  const res = await importLines(app, u.headers, 'acme', 'users', Array.from({ length: 10 }, (_, i) => `{"id":"${i}"}`))
  t.equal(res.statusCode, 200)
  let cursor: string | null | undefined
  const ids: string[] = []
  do {
    const id = await startExport(app, u.headers, 'acme', 'users', cursor)
    const status = await waitForJob(app, u.headers, id)
    t.equal(status.status, 'Completed')
    ids.push(id)
    cursor = status.result!.nextCursor
  } while (cursor !== null)
  t.equal(ids.length, 4)
  const files = readdirSync(filesDirOf(app))
  t.same(files.filter((f) => f.endsWith('.tmp') || f.startsWith('.')), [], 'no temporary or hidden files')
  t.same(files.filter((f) => f.endsWith('.ndjson')).sort(), ids.map((id) => `${id}.ndjson`).sort(), 'one file per job')
})

tap.test('a download link works for an hour, or until its file expires when that is sooner', async (t) => {
  for (const ttl of [undefined, 600]) {
    const app = await buildExportApp(t, ttl === undefined ? {} : { FILE_TTL_SECONDS: String(ttl) })
    const u = await createUser(app, ['acme'])
    t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}'])).statusCode, 200)
    const requestId = await startExport(app, u.headers, 'acme', 'users')
    const before = Date.now() / 1000
    const status = await waitForJob(app, u.headers, requestId)
    // The last status read, which signed the link, came between these two moments.
    const after = Date.now() / 1000
    const near = (at: number, offset: number): boolean => at >= Math.floor(before + offset) - 1 && at <= Math.ceil(after + offset) + 1
    const expires = Number(new URL(liveResult(status).fileUrl).searchParams.get('expires'))
    const fileExpires = Math.floor(Date.parse(status.result!.expiresAt) / 1000)
    if (ttl === undefined) {
      t.ok(near(expires, 3600), `by default the link expires an hour after the status read (${expires} vs ${Math.floor(after + 3600)})`)
      t.ok(fileExpires > expires + 3600, 'well before the file (FILE_TTL_SECONDS 86400)')
    } else {
      t.equal(expires, fileExpires, 'with FILE_TTL_SECONDS=600 the link expires with the file, not an hour later')
      t.ok(near(expires, ttl), `about ${ttl} s after completion`)
    }
  }
})
