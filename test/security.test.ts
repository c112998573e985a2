import tap from 'tap'
import crypto, { randomUUID } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildApp } from '../src/app.js'
import { loggerOptions } from '../src/logger.js'
import { loadConfig } from '../src/config.js'
import { loadSigningSecret, SECRET_FILE } from '../src/services/signing.js'
import { admin, ADMIN_TOKEN, build, createUser, filesDirOf, importLines } from './helpers/build.js'
import { buildExportApp, downloadFile, NO_RATE_LIMITS, readStatus, startExport, waitForJob, type JobStatusBody, liveResult } from './helpers/exports.js'

const EXPORT_FILE = /^export-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.ndjson$/

/** Every file under `dir`, as paths relative to it. */
function tree (dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort()
}

tap.test('security headers on /docs and on API responses', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const done = await waitForJob(app, u.headers, requestId)

  for (const url of ['/docs', '/docs/']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 200, url)
    t.match(res.headers['content-type'], /^text\/html/, url)
    const csp = String(res.headers['content-security-policy'] ?? '')
    t.match(csp, /default-src 'self'/, `${url}: a content-security-policy`)
    t.match(csp, /script-src 'self'/, `${url}: scripts from the server only`)
    t.match(csp, /object-src 'none'/, `${url}: no plugins`)
    t.notMatch(csp, /upgrade-insecure-requests/, `${url}: no upgrade-insecure-requests (the docs work over plain http)`)
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${url}: nosniff`)
    t.match(res.headers['x-frame-options'], /^(DENY|SAMEORIGIN)$/, `${url}: x-frame-options`)
    t.match(res.headers['referrer-policy'], /^(no-referrer|same-origin|strict-origin(-when-cross-origin)?)$/, `${url}: referrer-policy`)
    t.equal(res.headers['x-powered-by'], undefined, `${url}: no x-powered-by`)
  }

  const api: Array<[string, LightMyRequestResponse]> = [
    ['a JSON answer', await readStatus(app, u.headers, requestId)],
    ['a problem', await readStatus(app, u.headers, `export-${randomUUID()}`)],
    ['an unauthenticated problem', await app.inject({ url: '/api/v1/idm/acme/users/x' })],
    ['an NDJSON download', await downloadFile(app, done.result!.fileUrl)],
    ['the spec', await app.inject({ url: '/openapi.json' })],
  ]
  for (const [what, res] of api) {
    t.ok(res.statusCode < 500, what)
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`)
    t.ok(res.headers['x-frame-options'], `${what}: x-frame-options`)
    t.equal(res.headers['x-powered-by'], undefined, `${what}: no x-powered-by`)
  }
})

tap.test('no token, signature or secret in any log line or error body across a whole workflow', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-security-'))
  const lines: string[] = []
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN, LOG_LEVEL: 'trace', EXPORT_JOB_SIZE: '3', ...NO_RATE_LIMITS })
  const app = await buildApp(config, { logger: { ...(loggerOptions(config) as object), stream: { write: (line: string) => { lines.push(line) } } } })
  t.teardown(async () => {
    await app.close()
    rmSync(dataDir, { recursive: true, force: true })
  })
  await app.ready()

  const secrets = new Set<string>([ADMIN_TOKEN, readFileSync(join(dataDir, SECRET_FILE), 'utf8').trim()])
  const errors: LightMyRequestResponse[] = []
  const call = async (options: InjectOptions) => {
    const res = await app.inject(options)
    if (res.statusCode >= 400) errors.push(res)
    t.ok(res.statusCode < 500, `no 5xx (${res.statusCode})`)
    return res
  }

  const u = await createUser(app, ['acme'])
  secrets.add(u.token)
  const rotated = await call({ method: 'POST', url: `/api/v1/admin/users/${u.userId}/tokens`, headers: admin })
  const second = rotated.json() as { tokenId: string, token: string }
  secrets.add(second.token)
  await call({ url: `/api/v1/admin/users/${u.userId}/tokens`, headers: admin })
  t.equal((await importLines(app, u.headers, 'acme', 'users', Array.from({ length: 7 }, (_, i) => JSON.stringify({ id: `u-${i}` })))).statusCode, 200)
  await call({ method: 'PUT', url: '/api/v1/idm/acme/users/u-7', headers: u.headers, payload: { id: 'u-7' } })
  await call({ url: '/api/v1/idm/acme/users/u-7', headers: u.headers })

  // A chain of pages, each downloaded through its signed fileUrl, whole and by range.
  let cursor: string | null = null
  const fileUrls: string[] = []
  do {
    const started = await call({
      method: 'POST', url: '/api/v1/idm/acme/users/export', headers: { ...u.headers, 'idempotency-key': randomUUID() }, payload: { cursor },
    })
    const status = await waitForJob(app, u.headers, started.json().requestId) as JobStatusBody
    const fileUrl = liveResult(status).fileUrl
    fileUrls.push(fileUrl)
    secrets.add(new URL(fileUrl).searchParams.get('sig')!)
    t.equal((await downloadFile(app, fileUrl)).statusCode, 200)
    t.equal((await downloadFile(app, fileUrl, { range: 'bytes=0-3' })).statusCode, 206)
    cursor = status.result!.nextCursor
  } while (cursor !== null)
  t.equal(fileUrls.length, 3, 'three pages')

  // Refused requests that carry secrets of their own.
  const url = new URL(fileUrls[0])
  const sig = url.searchParams.get('sig')!
  const tampered = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)
  const forgedToken = `bes_${randomUUID().replaceAll('-', '')}`
  secrets.add(tampered)
  secrets.add(forgedToken)
  const refused: Array<[string, number, LightMyRequestResponse]> = [
    ['a tampered signature', 403, await call({ url: `${url.pathname}?expires=${url.searchParams.get('expires')}&sig=${tampered}` })],
    ['a signature for another expiry', 403, await call({ url: `${url.pathname}?expires=${Number(url.searchParams.get('expires')) + 1}&sig=${sig}` })],
    ['a bad path with a signature', 400, await call({ url: `/api/v1/files/%E0%A4%A?expires=1&sig=${sig}` })],
    ['an unknown route with a signature', 404, await call({ url: `/api/v1/nope?sig=${sig}&token=${u.token}` })],
    ['a forged user token', 401, await call({ url: '/api/v1/idm/acme/users/u-1', headers: { authorization: `Bearer ${forgedToken}` } })],
    ['a user token on the admin API', 401, await call({ url: `/api/v1/admin/users/${u.userId}/tokens`, headers: u.headers })],
    ['the admin token as a user token', 401, await call({ url: '/api/v1/idm/acme/users/u-1', headers: admin })],
    ['a token in the query', 401, await call({ url: `/api/v1/idm/acme/users/u-1?access_token=${u.token}` })],
    ['a malformed Authorization header', 401, await call({ url: '/api/v1/idm/acme/users/u-1', headers: { authorization: `Token ${u.token}` } })],
    ['a token in a body', 400, await call({ method: 'POST', url: '/api/v1/idm/acme/users/export', headers: u.headers, payload: { cursor: null, token: u.token } })],
  ]
  for (const [what, status, res] of refused) t.equal(res.statusCode, status, what)
  await call({ method: 'DELETE', url: `/api/v1/admin/users/${u.userId}/tokens/${second.tokenId}`, headers: admin })
  t.equal((await call({ url: '/api/v1/idm/acme/users/u-1', headers: { authorization: `Bearer ${second.token}` } })).statusCode, 401, 'a revoked token')
  const last = await startExport(app, u.headers, 'acme', 'users')
  t.equal((await call({ method: 'DELETE', url: `/api/v1/request/${last}`, headers: u.headers })).statusCode, 202)
  await waitForJob(app, u.headers, last)

  await app.close()
  t.ok(lines.length > 50, `the workflow was logged (${lines.length} lines)`)
  const log = lines.join('')
  t.ok(log.includes('sig=[REDACTED]'), 'signed URLs are logged with the signature redacted')
  for (const secret of secrets) {
    t.ok(secret.length >= 20, 'a secret worth looking for')
    t.notOk(log.includes(secret), `no ${secret.slice(0, 6)}… in the log`)
    const leaking = errors.filter((res) => res.body.includes(secret) || JSON.stringify(res.headers).includes(secret))
    t.same(leaking.map((res) => res.body.slice(0, 200)), [], `no ${secret.slice(0, 6)}… in an error answer`)
  }
  t.ok(errors.length >= refused.length, `error answers were checked (${errors.length})`)
})

tap.test('export files are named from server-generated ids only', async (t) => {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '2' })
  const firm = 'Evil-Firm_0'
  const type = 'x-Y_z'
  const u = await createUser(app, [firm])
  const ids = ['../../../../etc/passwd', '..\\..\\boot.ini', '/abs/path', 'a\u202eb.exe', '%2e%2e%2f', 'con', 'x\ty', '😀', '.hidden']
  const res = await importLines(app, u.headers, firm, type, ids.map((id) => JSON.stringify({ id })))
  t.equal(res.statusCode, 200, res.body)

  const completed: string[] = []
  const dispositions: string[] = []
  let cursor: string | null | undefined
  do {
    const requestId = await startExport(app, u.headers, firm, type, cursor)
    const done = await waitForJob(app, u.headers, requestId)
    t.equal(done.status, 'Completed')
    completed.push(requestId)
    const file = await downloadFile(app, done.result!.fileUrl)
    dispositions.push(String(file.headers['content-disposition']))
    cursor = done.result!.nextCursor
  } while (cursor !== null)
  t.equal(completed.length, 5)

  // Hostile names in the places a path could come from are refused before any file exists.
  const hostile = [
    `/api/v1/idm/${encodeURIComponent('../../etc')}/${type}/export`,
    `/api/v1/idm/${firm}/${encodeURIComponent('../x')}/export`,
    `/api/v1/idm/${firm}/..%252f..%252fetc/export`,
    `/api/v1/idm/${firm}/${type}%00/export`,
  ]
  for (const url of hostile) {
    const r = await app.inject({ method: 'POST', url, headers: u.headers })
    t.ok(r.statusCode >= 400 && r.statusCode < 500, `${url}: ${r.statusCode}`)
  }
  const badCursor = await app.inject({ method: 'POST', url: `/api/v1/idm/${firm}/${type}/export`, headers: u.headers, payload: { cursor: '../../../../tmp/x' } })
  t.equal(badCursor.json().code, 'INVALID_CURSOR')

  const files = readdirSync(filesDirOf(app)).sort()
  t.ok(files.every((name) => EXPORT_FILE.test(name)), `every file is export-<uuid>.ndjson: ${files.join(', ')}`)
  t.same(files, completed.map((id) => `${id}.ndjson`).sort(), 'one per completed job, named by its id')
  t.same(dispositions, completed.map((id) => `attachment; filename="${id}.ndjson"`), 'the download names the file by its id too')
  const all = tree(app.testConfig.dataDir)
  t.same(all.filter((p) => p.startsWith('exports/') && !EXPORT_FILE.test(p.slice('exports/'.length))), [], 'nothing else in the files directory')
  const userStrings = [firm, type, 'passwd', 'boot', 'abs', '\u202e', 'con', '😀', 'hidden', '%2e', '..']
  t.same(all.filter((p) => userStrings.some((s) => p.includes(s))), [], 'no path under DATA_DIR carries a client-supplied string')
})

tap.test('the generated signing secret is kept with mode 0600, whatever the umask', async (t) => {
  const previous = process.umask(0)
  let app: Awaited<ReturnType<typeof build>>
  try {
    app = await build(t)
  } finally {
    process.umask(previous)
  }
  const path = join(app.testConfig.dataDir, SECRET_FILE)
  const st = statSync(path)
  t.equal((st.mode & 0o777).toString(8), '600', 'owner read/write only')
  t.ok(readFileSync(path, 'utf8').trim().length >= 32, 'a long secret')
  const other = await build(t)
  t.not(readFileSync(join(other.testConfig.dataDir, SECRET_FILE), 'utf8'), readFileSync(path, 'utf8'), 'generated per data directory')
})

tap.test('signatures, cursors and tokens are compared with crypto.timingSafeEqual', async (t) => {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '1' })
  const u = await createUser(app, ['acme'])
  await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}'])
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const done = await waitForJob(app, u.headers, requestId)
  const fileUrl = new URL(liveResult(done).fileUrl)
  const sig = fileUrl.searchParams.get('sig')!
  const cursor = done.result!.nextCursor!

  // Spy on the function every module imported from node:crypto (live ESM bindings).
  const original = crypto.timingSafeEqual
  const calls: Array<[number, number]> = []
  crypto.timingSafeEqual = (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
    calls.push([a.byteLength, b.byteLength])
    return original(a, b)
  }
  syncBuiltinESMExports()
  t.teardown(() => {
    crypto.timingSafeEqual = original
    syncBuiltinESMExports()
  })
  const spied = async (what: string, fn: () => Promise<LightMyRequestResponse>, status: number) => {
    calls.length = 0
    const res = await fn()
    t.equal(res.statusCode, status, `${what}: ${res.statusCode}`)
    t.ok(calls.length >= 1, `${what}: compared with timingSafeEqual (${calls.length} calls)`)
    t.ok(calls.every(([a, b]) => a === b && a >= 32), `${what}: over whole MACs or digests (${JSON.stringify(calls)})`)
  }
  const at = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1)
  const query = (s: string) => `${fileUrl.pathname}?expires=${fileUrl.searchParams.get('expires')}&sig=${s}`

  await spied('a genuine download link', () => downloadFile(app, fileUrl.href), 200)
  await spied('a link altered in its first character', () => app.inject({ url: query(at(sig, 0)) }), 403)
  await spied('a link altered in its 42nd character', () => app.inject({ url: query(at(sig, 41)) }), 403)
  const [version, payload, mac] = cursor.split('.')
  await spied('a genuine cursor', () => app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/export', headers: u.headers, payload: { cursor } }), 200)
  await spied('a cursor with a forged MAC', () => app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/export', headers: u.headers, payload: { cursor: `${version}.${payload}.${at(mac, 3)}` } }), 400)
  await spied('a user token', () => readStatus(app, u.headers, requestId), 200)
  await spied('the admin token', () => app.inject({ url: `/api/v1/admin/users/${u.userId}/tokens`, headers: admin }), 200)
  await spied('a wrong admin token of the same length', () => app.inject({ url: `/api/v1/admin/users/${u.userId}/tokens`, headers: { authorization: `Bearer ${at(ADMIN_TOKEN, 5)}` } }), 401)
  await spied('a wrong admin token of another length', () => app.inject({ url: `/api/v1/admin/users/${u.userId}/tokens`, headers: { authorization: `Bearer ${ADMIN_TOKEN}x` } }), 401)

  // Inputs of the wrong length are refused, never an exception from timingSafeEqual.
  for (const bad of ['A', 'A'.repeat(42), 'A'.repeat(44), 'A'.repeat(128), `${sig}=`, sig.slice(0, -1)]) {
    const res = await app.inject({ url: query(bad) })
    t.ok(res.statusCode === 400 || res.statusCode === 403, `a ${bad.length}-character signature: ${res.statusCode}`)
  }
  for (const token of ['a', 'x'.repeat(5000), `bes_${'x'.repeat(300)}`]) {
    t.equal((await app.inject({ url: `/api/v1/admin/users/${u.userId}/tokens`, headers: { authorization: `Bearer ${token}` } })).statusCode, 401)
    t.equal((await readStatus(app, { authorization: `Bearer ${token}` }, requestId)).statusCode, 401)
  }
})

tap.test('a kept signing secret that is empty or short is refused, never signed with; a new one is whole and stable', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bes-secret-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const first = loadSigningSecret(dir, undefined)
  t.ok(first.length >= 32, 'a generated secret is long enough')
  t.equal(loadSigningSecret(dir, undefined), first, 'and is kept across starts')
  t.same(readdirSync(dir), [SECRET_FILE], 'no temporary file is left beside it')
  for (const content of ['', '\n', 'short-secret\n']) {
    writeFileSync(join(dir, SECRET_FILE), content)
    t.throws(() => loadSigningSecret(dir, undefined), /shorter than 32 characters/, `a kept secret of ${JSON.stringify(content)} stops the start`)
  }
  t.equal(loadSigningSecret(dir, 'g'.repeat(32)), 'g'.repeat(32), 'SIGNING_SECRET, when given, is used instead')
})
