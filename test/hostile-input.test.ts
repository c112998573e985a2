import tap, { type Test } from 'tap'
import fc from 'fast-check'
import { randomUUID } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { request as httpRequest } from 'node:http'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { admin, createUser, filesDirOf, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, startExport, waitForJob, liveResult } from './helpers/exports.js'

type App = Awaited<ReturnType<typeof buildExportApp>>

/** Everything a request could write: every table, and the export files. */
function snapshot (app: FastifyInstance): string {
  const q = (sql: string) => sqliteOf(app).prepare(sql).raw(true).all()
  const tables = sqliteOf(app).prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '%drizzle%' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck(true).all() as string[]
  return JSON.stringify({
    rows: tables.map((name) => [name, q(`SELECT count(*) FROM "${name}"`)]),
    firms: q('SELECT id, name, created_at FROM firms ORDER BY id'),
    users: q('SELECT id, name FROM users ORDER BY id'),
    memberships: q('SELECT user_id, firm_id FROM memberships ORDER BY 1, 2'),
    tokens: q('SELECT id, user_id, revoked_at FROM tokens ORDER BY id'),
    objects: q('SELECT firm_id, type, id, hex(doc), updated_at FROM objects ORDER BY seq'),
    staged: readdirSync(join(app.config.dataDir, 'imports')).sort(),
    jobs: q('SELECT id, status, file_name, expires_at FROM export_jobs ORDER BY id'),
    files: readdirSync(filesDirOf(app)).sort(),
  })
}

/** A 4xx RFC 9457 problem: the content type, a stable code, the status in the body. */
function checkProblem (t: Test, res: LightMyRequestResponse, what: string): void {
  t.ok(res.statusCode >= 400 && res.statusCode < 500, `${what}: a 4xx (${res.statusCode} ${res.statusCode >= 500 ? res.body : ''})`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: problem+json`)
  let body: { code?: unknown, status?: unknown, type?: unknown, title?: unknown }
  try {
    body = res.json()
  } catch {
    t.fail(`${what}: the body is JSON`)
    return
  }
  t.match(body.code, /^[A-Z][A-Z_]+$/, `${what}: a code (${String(body.code)})`)
  t.equal(body.status, res.statusCode, `${what}: the status in the body`)
  t.type(body.type, 'string', `${what}: a type`)
  t.type(body.title, 'string', `${what}: a title`)
  t.notMatch(res.body, /\bat [\w.<>]+ \(|SQLITE|sqlite3|node_modules/i, `${what}: no stack trace or SQL`)
}

/** Short, printable label for a case. */
function label (s: string): string {
  const shown = JSON.stringify(s.length > 70 ? `${s.slice(0, 50)}…(${s.length})` : s)
  return shown.slice(1, -1)
}

// Path segments: traversal (plain, encoded, double-encoded, NUL), unicode edge cases, sizes.
const TRAVERSAL = ['..', '..%2F..%2Fetc%2Fpasswd', '..%2f', '%2e%2e%2f%2e%2e%2fetc', '%252e%252e%252f', '..%5C..%5Cwindows', '%00', 'a%00b', '%2e', '%C0%AE%C0%AE']
const UNICODE = ['%ED%A0%80', '%ED%B0%80x', '%E2%80%AE', '%E2%80%8B', '%F0%9F%98%80', '%EF%BB%BF', '%FF', '%E0%A4%A']
const NAMES = ['-lead', '_lead', 'a.b', 'a b', 'a+b', 'é', 'a'.repeat(65), 'a'.repeat(10_000)]
const ALL_SEGMENTS = [...TRAVERSAL, ...UNICODE, ...NAMES]
/** Firm and object-type segments that must never name a collection. */
const BAD_TYPES = [...TRAVERSAL, ...UNICODE, 'Users', '1users', 'us.ers', 'a'.repeat(65)]

// JSON bodies that are malformed, of the wrong type or shape, or hostile in their strings.
const MALFORMED = ['{"name":', '{name: "x"}', "{'name':'x'}", '{"name":"x"} trailing', '{"name":"x",}', '[', 'nul', '\u0000', '{"name":"\u0000', '\ufeff\ufeff{}']
const PROTO = ['{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"admin":true}}}']
const NOT_OBJECTS = ['[]', '"x"', '5', 'true', 'null']
const LONE = '\\ud800'
const RAW_LONE = Buffer.from([0xed, 0xa0, 0x80])
const jsonWithRaw = (before: string, after: string) => Buffer.concat([Buffer.from(before), RAW_LONE, Buffer.from(after)])

interface Case { what: string, options: InjectOptions }

async function setup (t: Test) {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '2' })
  const u = await createUser(app, ['acme'], 'owner')
  const other = await createUser(app, ['globex'], 'other')
  const res = await importLines(app, u.headers, 'acme', 'users', ['{"id":"obj-1","v":1}', '{"id":"obj-2","v":2}', '{"id":"obj-3","v":3}'])
  if (res.statusCode !== 200) throw new Error(res.body)
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const done = await waitForJob(app, u.headers, requestId)
  const tokenId = (await app.inject({ url: `/api/v1/admin/users/${u.userId}/tokens`, headers: admin })).json().tokens[0].tokenId as string
  return { app, u, other, requestId, done, tokenId }
}

/** Runs every case and checks each answer and that nothing was written. */
async function runMatrix (t: Test, app: App, cases: Case[]): Promise<void> {
  const before = snapshot(app)
  for (const { what, options } of cases) {
    const res = await app.inject(options)
    checkProblem(t, res, what)
    const after = snapshot(app)
    if (after !== before) {
      t.fail(`${what}: wrote something`, { before, after })
      return
    }
  }
  t.pass(`${cases.length} cases; nothing written`)
}

const json = (headers: Record<string, string>) => ({ ...headers, 'content-type': 'application/json' })

tap.test('admin API: putFirm, createUser, listUserTokens, createUserToken, revokeUserToken', async (t) => {
  const { app, u, other, tokenId } = await setup(t)
  const A = json(admin)
  const cases: Case[] = []
  const add = (what: string, options: InjectOptions) => cases.push({ what, options })

  for (const seg of ALL_SEGMENTS) add(`putFirm /${label(seg)}`, { method: 'PUT', url: `/api/v1/admin/firms/${seg}`, headers: admin })
  const firmBodies: Array<[string, string | Buffer]> = [
    ...MALFORMED.map((b) => [`malformed ${label(b)}`, b] as [string, string]),
    ...PROTO.map((b) => [`prototype ${b}`, b] as [string, string]),
    ...NOT_OBJECTS.map((b) => [`not an object ${b}`, b] as [string, string]),
    ['name: {}', '{"name":{}}'], ['name: 5', '{"name":5}'], ['name: null', '{"name":null}'], ['name: []', '{"name":[]}'],
    ['unknown field', '{"nome":"x"}'], ['unknown field beside name', '{"name":"x","admin":true}'],
    ['empty name', '{"name":""}'], ['201-char name', JSON.stringify({ name: 'n'.repeat(201) })],
    ['1 MB name', JSON.stringify({ name: 'n'.repeat(1_000_000) })], ['2 MB name', JSON.stringify({ name: 'n'.repeat(2_000_000) })],
    ['lone surrogate name', `{"name":"${LONE}"}`], ['lone low surrogate name', '{"name":"a\\udc00b"}'],
    ['raw lone surrogate bytes', jsonWithRaw('{"name":"', '"}')], ['invalid UTF-8', Buffer.from('{"name":"\xff\xfe"}', 'latin1')],
  ]
  for (const [what, payload] of firmBodies) add(`putFirm body ${what}`, { method: 'PUT', url: '/api/v1/admin/firms/newfirm', headers: A, payload })
  add('putFirm text/plain', { method: 'PUT', url: '/api/v1/admin/firms/newfirm', headers: { ...admin, 'content-type': 'text/plain' }, payload: '{"name":"x"}' })
  add('putFirm application/xml', { method: 'PUT', url: '/api/v1/admin/firms/newfirm', headers: { ...admin, 'content-type': 'application/xml' }, payload: '<name/>' })
  add('putFirm with a user token', { method: 'PUT', url: '/api/v1/admin/firms/newfirm', headers: u.headers })

  const userBodies: Array<[string, string | Buffer]> = [
    ...MALFORMED.map((b) => [`malformed ${label(b)}`, b] as [string, string]),
    ...PROTO.map((b) => [`prototype ${b}`, b] as [string, string]),
    ...NOT_OBJECTS.map((b) => [`not an object ${b}`, b] as [string, string]),
    ['name: {}', '{"name":{},"firms":["acme"]}'], ['firms: "x"', '{"name":"x","firms":"x"}'], ['firms: [5]', '{"name":"x","firms":[5]}'],
    ['firms: {}', '{"name":"x","firms":{}}'], ['no firms', '{"name":"x"}'], ['no name', '{"firms":["acme"]}'], ['firms: []', '{"name":"x","firms":[]}'],
    ['duplicate firms', '{"name":"x","firms":["acme","acme"]}'], ['unknown field', '{"name":"x","firms":["acme"],"admin":true}'],
    ['an unknown firm', '{"name":"x","firms":["acme","nope"]}'], ['1001 firms', JSON.stringify({ name: 'x', firms: Array.from({ length: 1001 }, (_, i) => `f${i}`) })],
    ...BAD_TYPES.map((f) => [`firm ${label(f)}`, JSON.stringify({ name: 'x', firms: [decodeURIComponentSafe(f)] })] as [string, string]),
    ['1 MB name', JSON.stringify({ name: 'n'.repeat(1_000_000), firms: ['acme'] })], ['2 MB name', JSON.stringify({ name: 'n'.repeat(2_000_000), firms: ['acme'] })],
    ['lone surrogate name', `{"name":"x${LONE}","firms":["acme"]}`], ['raw lone surrogate bytes', jsonWithRaw('{"name":"', '","firms":["acme"]}')],
    ['invalid UTF-8', Buffer.from('{"name":"\xc3","firms":["acme"]}', 'latin1')],
  ]
  for (const [what, payload] of userBodies) add(`createUser body ${what}`, { method: 'POST', url: '/api/v1/admin/users', headers: A, payload })
  add('createUser without a body', { method: 'POST', url: '/api/v1/admin/users', headers: admin })
  add('createUser text/plain', { method: 'POST', url: '/api/v1/admin/users', headers: { ...admin, 'content-type': 'text/plain' }, payload: '{"name":"x","firms":["acme"]}' })
  add('createUser with a user token', { method: 'POST', url: '/api/v1/admin/users', headers: json(u.headers), payload: '{"name":"x","firms":["acme"]}' })

  const userIds = [...ALL_SEGMENTS, `user-${randomUUID()}`, `user-${randomUUID().toUpperCase()}`, `${u.userId}x`, `${u.userId}%00`]
  for (const id of userIds) {
    add(`listUserTokens /${label(id)}`, { method: 'GET', url: `/api/v1/admin/users/${id}/tokens`, headers: admin })
    add(`createUserToken /${label(id)}`, { method: 'POST', url: `/api/v1/admin/users/${id}/tokens`, headers: admin })
    add(`revokeUserToken /${label(id)}/<a real token>`, { method: 'DELETE', url: `/api/v1/admin/users/${id}/tokens/${tokenId}`, headers: admin })
  }
  for (const id of [...ALL_SEGMENTS, `token-${randomUUID()}`, `${tokenId}x`]) {
    add(`revokeUserToken <user>/${label(id)}`, { method: 'DELETE', url: `/api/v1/admin/users/${u.userId}/tokens/${id}`, headers: admin })
  }
  add("revokeUserToken of a token through another user's id", { method: 'DELETE', url: `/api/v1/admin/users/${other.userId}/tokens/${tokenId}`, headers: admin })
  add('createUserToken with a malformed body', { method: 'POST', url: `/api/v1/admin/users/${u.userId}/tokens`, headers: A, payload: '{"x":' })
  add('createUserToken with a user token', { method: 'POST', url: `/api/v1/admin/users/${u.userId}/tokens`, headers: u.headers })
  add('revokeUserToken with no token', { method: 'DELETE', url: `/api/v1/admin/users/${u.userId}/tokens/${tokenId}` })

  await runMatrix(t, app, cases)
  t.equal((await app.inject({ url: '/api/v1/idm/acme/users/obj-1', headers: u.headers })).statusCode, 200, 'the real token still works')
})

/** One request over a real socket, the path sent exactly as given (never resolved). */
async function rawHttp (base: string, path: string, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number, body: string }> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname, port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function decodeURIComponentSafe (s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

tap.test('objects: importObjects, getObject, putObject, deleteObject', async (t) => {
  const { app, u } = await setup(t)
  const J = json(u.headers)
  const N = { ...u.headers, 'content-type': 'application/x-ndjson' }
  const cases: Case[] = []
  const add = (what: string, options: InjectOptions) => cases.push({ what, options })
  const good = '{"id":"fresh-1","v":1}\n'

  for (const seg of BAD_TYPES) {
    add(`importObjects firm /${label(seg)}`, { method: 'POST', url: `/api/v1/idm/${seg}/users/import`, headers: N, payload: good })
    add(`importObjects type /${label(seg)}`, { method: 'POST', url: `/api/v1/idm/acme/${seg}/import`, headers: N, payload: good })
    add(`getObject firm /${label(seg)}`, { method: 'GET', url: `/api/v1/idm/${seg}/users/obj-1`, headers: u.headers })
    add(`getObject type /${label(seg)}`, { method: 'GET', url: `/api/v1/idm/acme/${seg}/obj-1`, headers: u.headers })
    add(`putObject firm /${label(seg)}`, { method: 'PUT', url: `/api/v1/idm/${seg}/users/obj-1`, headers: J, payload: '{"id":"obj-1"}' })
    add(`putObject type /${label(seg)}`, { method: 'PUT', url: `/api/v1/idm/acme/${seg}/obj-1`, headers: J, payload: '{"id":"obj-1"}' })
    add(`deleteObject firm /${label(seg)}`, { method: 'DELETE', url: `/api/v1/idm/${seg}/users/obj-1`, headers: u.headers })
    add(`deleteObject type /${label(seg)}`, { method: 'DELETE', url: `/api/v1/idm/acme/${seg}/obj-1`, headers: u.headers })
  }
  add('importObjects into a firm of another user', { method: 'POST', url: '/api/v1/idm/globex/users/import', headers: N, payload: good })

  // Every bad body starts with a good line: a partial write would show.
  const lines: Array<[string, string | Buffer]> = [
    ['malformed JSON', '{"id":"x"'], ['single quotes', "{'id':'x'}"], ['an array', '[1,2]'], ['null', 'null'], ['a string', '"str"'], ['a number', '5'],
    ['id: 5', '{"id":5}'], ['id: ""', '{"id":""}'], ['id: null', '{"id":null}'], ['id: {}', '{"id":{}}'], ['no id', '{"v":1}'], ['id: true then 5', '{"id":"a","id":5}'],
    ['a 257-char id', JSON.stringify({ id: 'i'.repeat(257) })], ['a 10k-char id', JSON.stringify({ id: 'i'.repeat(10_000) })],
    ['a lone surrogate id', `{"id":"${LONE}"}`], ['a lone low surrogate id', '{"id":"x\\udfff"}'], ['raw lone surrogate bytes in the id', jsonWithRaw('{"id":"', '"}')],
    ['raw lone surrogate bytes in a value', jsonWithRaw('{"id":"y","v":"', '"}')], ['invalid UTF-8', Buffer.from('{"id":"\xff"}', 'latin1')],
    ['an overlong encoding', Buffer.from('{"id":"\xc0\xae"}', 'latin1')], ['NUL in the id', '{"id":"a\\u0000b"}'], ['a raw NUL', '{"id":"a"}\u0000'],
    ['two objects on a line', '{"id":"x"}{"id":"y"}'], ['trailing text', '{"id":"x"} x'], ['a BOM mid-body', '\ufeff{"id":"x"}'],
    ['prototype pollution and a bad id', '{"__proto__":{"x":1},"id":5}'],
  ]
  for (const [what, line] of lines) {
    const payload = Buffer.concat([Buffer.from(good), typeof line === 'string' ? Buffer.from(line) : line, Buffer.from('\n{"id":"fresh-2"}\n')])
    add(`importObjects line ${what}`, { method: 'POST', url: '/api/v1/idm/acme/users/import', headers: N, payload })
  }
  for (const ct of ['application/json', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded']) {
    add(`importObjects as ${ct}`, { method: 'POST', url: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': ct }, payload: good })
  }
  add('importObjects without a content type', { method: 'POST', url: '/api/v1/idm/acme/users/import', headers: u.headers, payload: good })
  add('importObjects without a token', { method: 'POST', url: '/api/v1/idm/acme/users/import', headers: { 'content-type': 'application/x-ndjson' }, payload: good })

  const ids = [...TRAVERSAL.filter((s) => !['..', '%2e'].includes(s)), '%ED%A0%80', '%ED%B0%80x', '%FF', '%E0%A4%A', '%C0%AE', 'i'.repeat(257), 'i'.repeat(10_000)]
  for (const id of ids) {
    add(`getObject /${label(id)}`, { method: 'GET', url: `/api/v1/idm/acme/users/${id}`, headers: u.headers })
    add(`deleteObject /${label(id)}`, { method: 'DELETE', url: `/api/v1/idm/acme/users/${id}`, headers: u.headers })
    add(`putObject /${label(id)} (a body with no such id)`, { method: 'PUT', url: `/api/v1/idm/acme/users/${id}`, headers: J, payload: '{"id":"obj-1"}' })
  }
  add('putObject NUL id with a matching body', { method: 'PUT', url: '/api/v1/idm/acme/users/a%00b', headers: J, payload: '{"id":"a\\u0000b"}' })
  add('putObject lone surrogate id with a matching body', { method: 'PUT', url: '/api/v1/idm/acme/users/%ED%A0%80', headers: J, payload: `{"id":"${LONE}"}` })
  add('putObject 257-char id with a matching body', { method: 'PUT', url: `/api/v1/idm/acme/users/${'i'.repeat(257)}`, headers: J, payload: JSON.stringify({ id: 'i'.repeat(257) }) })
  const putBodies: Array<[string, string | Buffer]> = [
    ...MALFORMED.map((b) => [`malformed ${label(b)}`, b] as [string, string]),
    ...PROTO.map((b) => [`prototype ${b}`, b] as [string, string]),
    ...NOT_OBJECTS.map((b) => [`not an object ${b}`, b] as [string, string]),
    ['id: 5', '{"id":5}'], ['no id', '{"v":1}'], ['another id', '{"id":"obj-2"}'], ['id with a NUL', '{"id":"obj-1\\u0000"}'],
    ['a lone surrogate id', `{"id":"${LONE}"}`], ['raw lone surrogate bytes', jsonWithRaw('{"id":"obj-1","v":"', '"}')],
    ['invalid UTF-8', Buffer.from('{"id":"obj-1","v":"\xff"}', 'latin1')], ['3 MB', JSON.stringify({ id: 'obj-1', pad: 'p'.repeat(3_000_000) })],
  ]
  for (const [what, payload] of putBodies) add(`putObject body ${what}`, { method: 'PUT', url: '/api/v1/idm/acme/users/obj-1', headers: J, payload })
  add('putObject text/plain', { method: 'PUT', url: '/api/v1/idm/acme/users/obj-1', headers: { ...u.headers, 'content-type': 'text/plain' }, payload: '{"id":"obj-1"}' })
  add('putObject without a body', { method: 'PUT', url: '/api/v1/idm/acme/users/obj-1', headers: u.headers })
  add('putObject into a firm of another user', { method: 'PUT', url: '/api/v1/idm/globex/users/obj-1', headers: J, payload: '{"id":"obj-1"}' })
  add('deleteObject in a firm of another user', { method: 'DELETE', url: '/api/v1/idm/globex/users/obj-1', headers: u.headers })
  add('deleteObject with a garbage token', { method: 'DELETE', url: '/api/v1/idm/acme/users/obj-1', headers: { authorization: `Bearer bes_${'x'.repeat(5000)}` } })

  await runMatrix(t, app, cases)
})

tap.test('exports: startExport, getRequest, cancelRequest, downloadFile', async (t) => {
  const { app, u, requestId, done } = await setup(t)
  const J = json(u.headers)
  const cases: Case[] = []
  const add = (what: string, options: InjectOptions) => cases.push({ what, options })

  for (const seg of BAD_TYPES) {
    add(`startExport firm /${label(seg)}`, { method: 'POST', url: `/api/v1/idm/${seg}/users/export`, headers: u.headers })
    add(`startExport type /${label(seg)}`, { method: 'POST', url: `/api/v1/idm/acme/${seg}/export`, headers: u.headers })
  }
  add('startExport in a firm of another user', { method: 'POST', url: '/api/v1/idm/globex/users/export', headers: u.headers })
  const cursor = done.result!.nextCursor!
  const bodies: Array<[string, string | Buffer]> = [
    ...MALFORMED.map((b) => [`malformed ${label(b)}`, b] as [string, string]),
    ...PROTO.map((b) => [`prototype ${b}`, b] as [string, string]),
    ...NOT_OBJECTS.map((b) => [`not an object ${b}`, b] as [string, string]),
    ['cursor: 5', '{"cursor":5}'], ['cursor: {}', '{"cursor":{}}'], ['cursor: []', '{"cursor":[]}'], ['cursor: true', '{"cursor":true}'], ['cursor: ""', '{"cursor":""}'],
    ['next_cursor', JSON.stringify({ next_cursor: cursor })], ['cursor and an unknown field', JSON.stringify({ cursor, since: 'x' })],
    ['a 1 MB cursor', JSON.stringify({ cursor: 'c'.repeat(1_000_000) })], ['a 2049-char cursor', JSON.stringify({ cursor: 'c'.repeat(2049) })],
    ['a lone surrogate cursor', `{"cursor":"${LONE}"}`], ['a NUL cursor', '{"cursor":"\\u0000"}'], ['raw lone surrogate bytes', jsonWithRaw('{"cursor":"', '"}')],
    ['a cursor of another type', JSON.stringify({ cursor: cursor.replace(/\.[^.]+\./, '.' + Buffer.from('acme\0groups\0obj-2').toString('base64url') + '.') })],
    ['a truncated cursor', JSON.stringify({ cursor: cursor.slice(0, -1) })], ['a cursor with traversal', '{"cursor":"../../../etc/passwd"}'],
    ['an RTL and zero-width cursor', JSON.stringify({ cursor: `${cursor}\u202e\u200b` })], ['an emoji cursor', JSON.stringify({ cursor: '😀'.repeat(100) })],
  ]
  for (const [what, payload] of bodies) add(`startExport body ${what}`, { method: 'POST', url: '/api/v1/idm/acme/users/export', headers: J, payload })
  add('startExport text/plain', { method: 'POST', url: '/api/v1/idm/acme/users/export', headers: { ...u.headers, 'content-type': 'text/plain' }, payload: '{}' })
  for (const key of ['', 'a b', 'ключ', 'k'.repeat(256), 'x\u00ff']) {
    add(`startExport Idempotency-Key ${label(key)}`, { method: 'POST', url: '/api/v1/idm/acme/users/export', headers: { ...u.headers, 'idempotency-key': Buffer.from(key).toString('latin1') } })
  }
  add('startExport with a garbage token', { method: 'POST', url: '/api/v1/idm/acme/users/export', headers: { authorization: 'Bearer ../../etc/passwd' } })

  const requestIds = [...ALL_SEGMENTS, `export-${randomUUID()}`, requestId.toUpperCase(), `${requestId}x`, `${requestId}%00`, `${requestId}%2F..`, 'export-' + '0'.repeat(10_000)]
  for (const id of requestIds) {
    add(`getRequest /${label(id)}`, { method: 'GET', url: `/api/v1/request/${id}`, headers: u.headers })
    add(`cancelRequest /${label(id)}`, { method: 'DELETE', url: `/api/v1/request/${id}`, headers: u.headers })
  }
  add('cancelRequest with a malformed body', { method: 'DELETE', url: `/api/v1/request/${requestId}`, headers: J, payload: '{"x":' })
  add('cancelRequest without a token', { method: 'DELETE', url: `/api/v1/request/${requestId}` })

  const url = new URL(liveResult(done).fileUrl)
  const expires = url.searchParams.get('expires')!
  const sig = url.searchParams.get('sig')!
  for (const id of requestIds) {
    add(`downloadFile /${label(id)}`, { method: 'GET', url: `/api/v1/files/${id}?expires=${expires}&sig=${sig}` })
  }
  const queries = [
    '', `?expires=${expires}`, `?sig=${sig}`, `?expires=${expires}&sig=`, `?expires=-1&sig=${sig}`, `?expires=1e9&sig=${sig}`, `?expires=0x10&sig=${sig}`,
    `?expires=%20${expires}&sig=${sig}`, `?expires=${'9'.repeat(13)}&sig=${sig}`, `?expires=${expires}&expires=${expires}&sig=${sig}`,
    `?expires=${expires}&sig=${sig}&sig=${sig}`, `?expires=${expires}&sig=..%2F..%2Fetc%2Fpasswd`, `?expires=${expires}&sig=%00`,
    `?expires=${expires}&sig=${sig}%00`, `?expires=${expires}&sig=${'A'.repeat(129)}`, `?expires=${expires}&sig=${'A'.repeat(10_000)}`,
    `?expires=${expires}&sig=${sig.slice(0, -1)}B`, `?expires=${expires}&sig=%ED%A0%80`, `?expires=${expires}&sig=${encodeURIComponent('😀')}`,
    `?expires=${Number(expires) + 1}&sig=${sig}`, `?expires=1&sig=${sig}`,
  ]
  for (const q of queries) add(`downloadFile ?${label(q.slice(1))}`, { method: 'GET', url: `/api/v1/files/${requestId}${q}` })
  add('downloadFile with a malformed Range', { method: 'GET', url: `/api/v1/files/${requestId}?expires=${expires}&sig=${sig}`, headers: { range: 'bytes=999999-' } })

  await runMatrix(t, app, cases)
  t.equal((await app.inject({ url: url.pathname + url.search })).statusCode, 200, 'the genuine link still downloads')
})

tap.test('legal unicode and path-like values are valid writes that round-trip', async (t) => {
  const { app, u } = await setup(t)
  // A real socket: inject (like fetch) resolves '..' and '%2E%2E' segments before sending.
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const ids = ['../../etc/passwd', '..', '.', '%2e%2e', 'a\u202eb', 'zero\u200bwidth', '😀', 'e\u0301', '\ufeffbom', 'tab\tand\nnewline', 'x'.repeat(256), '"quoted"\\']
  for (const id of ids) {
    // Dots are encoded too: a client library would resolve a bare '..' segment away.
    const url = `/api/v1/idm/acme/users/${encodeURIComponent(id).replaceAll('.', '%2E')}`
    const body = JSON.stringify({ id, note: 'value with \u0000 NUL and \\ud800 lone escapes: \ud800' })
    const put = await rawHttp(base, url, 'PUT', json(u.headers), body)
    t.equal(put.status, 201, `${label(id)}: created (${put.body.slice(0, 200)})`)
    const get = await rawHttp(base, url, 'GET', u.headers)
    t.equal(get.status, 200, `${label(id)}: read back`)
    t.equal(get.body, body, `${label(id)}: byte for byte`)
    t.equal(JSON.parse(get.body).id, id)
  }
  const imported = await importLines(app, u.headers, 'acme', 'users', ['{"id":"imp-\\u202e\\u200b😀","v":"\\ud800"}'])
  t.equal(imported.statusCode, 200)
  t.equal((await app.inject({ url: `/api/v1/idm/acme/users/${encodeURIComponent('imp-\u202e\u200b😀')}`, headers: u.headers })).body, '{"id":"imp-\\u202e\\u200b😀","v":"\\ud800"}')

  // Names with legal unicode (and NUL, which SQLite keeps) are stored as sent.
  for (const name of ['Acme \u202eevil\u202c', 'zero\u200bwidth 😀', 'nul\u0000inside']) {
    const created = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/unicode', headers: json(admin), payload: { name } })
    t.ok(created.statusCode === 200 || created.statusCode === 201, `firm name ${label(name)}`)
    t.equal(created.json().name, name)
    t.equal(sqliteOf(app).prepare("SELECT name FROM firms WHERE id = 'unicode'").pluck(true).get(), name, `${label(name)}: stored as sent`)
    const user = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: json(admin), payload: { name, firms: ['unicode'] } })
    t.equal(user.statusCode, 201)
    t.equal(sqliteOf(app).prepare('SELECT name FROM users WHERE id = ?').pluck(true).get(user.json().userId), name, `user ${label(name)}: stored as sent`)
  }
  t.same(readdirSync(filesDirOf(app)).filter((n) => !n.startsWith('export-')), [], 'no file but export files')
})

tap.test('property: any string as cursor is a 400 INVALID_CURSOR or VALIDATION_FAILED, never a 5xx', async (t) => {
  const { app, u, done } = await setup(t)
  const genuine = done.result!.nextCursor!
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const cursors = fc.oneof(
    fc.string({ maxLength: 3000 }),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: 'grapheme', maxLength: 100 }),
    fc.string({ unit: fc.constantFrom('\ud800', '\udc00', '\u0000', '.', 'c', '1', '\u202e', '😀'), maxLength: 100 }),
    fc.tuple(fc.constantFrom('c1', 'c2', ''), fc.stringMatching(/^[A-Za-z0-9_-]{0,80}$/), fc.stringMatching(/^[A-Za-z0-9_-]{43}$/)).map(([a, b, c]) => `${a}.${b}.${c}`),
    fc.tuple(fc.nat(genuine.length - 1), fc.constantFrom(...B64.split(''), '.', '=', ' ')).map(([i, c]) => genuine.slice(0, i) + c + genuine.slice(i + 1)),
    fc.nat(genuine.length - 1).map((n) => genuine.slice(0, n))
  ).filter((s) => s !== genuine)
  const before = snapshot(app)
  await fc.assert(fc.asyncProperty(cursors, async (cursor) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/export', headers: json(u.headers), payload: JSON.stringify({ cursor }) })
    if (res.statusCode !== 400) throw new Error(`${JSON.stringify(cursor)}: ${res.statusCode} ${res.body}`)
    const code = res.json().code
    if (code !== 'INVALID_CURSOR' && code !== 'VALIDATION_FAILED') throw new Error(`${JSON.stringify(cursor)}: code ${code}`)
    if (!/^application\/problem\+json/.test(String(res.headers['content-type']))) throw new Error('not a problem')
  }), { numRuns: 250 })
  t.equal(snapshot(app), before, 'no job was started')
})

tap.test('property: any bytes as an import body give 200 or a 4xx problem; a 4xx writes nothing', async (t) => {
  const { app, u } = await setup(t)
  const N = { ...u.headers, 'content-type': 'application/x-ndjson' }
  const objectLine = fc.record({
    id: fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 10 }), fc.constantFrom('obj-1', 'x\u0000', '\ud800', '')),
    v: fc.jsonValue({ maxDepth: 2 }),
  }).map((o) => JSON.stringify(o))
  const line = fc.oneof(
    { weight: 6, arbitrary: objectLine },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', '\t', '{', 'null', '[]', '{"id":5}', '{"v":1}') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) }
  )
  const structured = fc.tuple(fc.array(line, { maxLength: 15 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
    .map(([lines, nl, bom]) => Buffer.from((bom ? '\ufeff' : '') + lines.join(nl) + nl))
  const bytes = fc.oneof(fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)), structured)

  let accepted = 0
  let refused = 0
  await fc.assert(fc.asyncProperty(bytes, async (body) => {
    const before = snapshot(app)
    const res = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/fuzz/import', headers: N, payload: body })
    if (res.statusCode === 200) {
      accepted++
      if (typeof res.json().imported !== 'number') throw new Error(`200 without a count: ${res.body}`)
      return
    }
    refused++
    if (res.statusCode < 400 || res.statusCode >= 500) throw new Error(`${res.statusCode} ${res.body}`)
    if (!/^application\/problem\+json/.test(String(res.headers['content-type']))) throw new Error(`not a problem: ${res.body}`)
    if (typeof res.json().code !== 'string') throw new Error(`no code: ${res.body}`)
    if (snapshot(app) !== before) throw new Error(`a ${res.statusCode} (${res.body}) wrote something`)
  }), { numRuns: 200 })
  // About 5 % of the random bodies are wholly valid: enough runs pass to show imports work.
  t.ok(accepted >= 5, `some bodies were imported (${accepted})`)
  t.ok(refused > 10, `some were refused (${refused})`)
})
