import tap from 'tap'
import fc from 'fast-check'
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { AppError } from '../src/errors.js'
import { createSigner, SECRET_FILE } from '../src/services/signing.js'
import { createUser, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, exportChain, exportPage, ndjsonLines, postExport, waitForJob } from './helpers/exports.js'

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** The same string with the character at `i` replaced by another base64url character. */
function flip (s: string, i: number): string {
  const c = s[i]
  const other = B64URL[(B64URL.indexOf(c) + 17) % B64URL.length]
  return s.slice(0, i) + other + s.slice(i + 1)
}

function jobCount (app: FastifyInstance): number {
  return (sqliteOf(app).prepare('SELECT count(*) AS n FROM export_jobs').get() as { n: number }).n
}

/** A user in two firms with a few objects in acme/users, acme/groups and beta/users; job size 2. */
async function setup (t: Parameters<typeof buildExportApp>[0]) {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '2' })
  const u = await createUser(app, ['acme', 'beta'])
  for (const [firm, type] of [['acme', 'users'], ['acme', 'groups'], ['beta', 'users']]) {
    const res = await importLines(app, u.headers, firm, type, ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}', '{"id":"d"}', '{"id":"e"}'])
    if (res.statusCode !== 200) throw new Error(res.body)
  }
  /** The nextCursor after the first page of firm/type. */
  async function cursorOf (firm: string, type: string): Promise<string> {
    const page = await exportPage(app, u.headers, firm, type)
    if (typeof page.result.nextCursor !== 'string') throw new Error('no cursor')
    return page.result.nextCursor
  }
  return { app, u, cursorOf }
}

tap.test('a genuine cursor continues the chain (the control for the refusals below)', async (t) => {
  const { app, u, cursorOf } = await setup(t)
  const cursor = await cursorOf('acme', 'users')
  t.match(cursor, /^c2\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/, 'versioned, opaque, signed')
  const page = await exportPage(app, u.headers, 'acme', 'users', cursor)
  t.same(ndjsonLines(page.file), ['{"id":"c"}', '{"id":"d"}'])
})

tap.test('forged, truncated, foreign and garbage cursors are 400 INVALID_CURSOR and queue nothing', async (t) => {
  const { app, u, cursorOf } = await setup(t)
  const cursor = await cursorOf('acme', 'users')
  const fromBeta = await cursorOf('beta', 'users')
  const ofGroups = await cursorOf('acme', 'groups')
  const [version, payload, signature] = cursor.split('.')

  // A cursor with an unknown version, signed with this server's own cursor key.
  const secret = readFileSync(join(app.config.dataDir, SECRET_FILE), 'utf8').trim()
  const cursorKey = createHmac('sha256', Buffer.from(secret)).update('bulk-export cursor v1').digest()
  const v2 = `c9.${payload}.${createHmac('sha256', cursorKey).update(`c9.${payload}`).digest('base64url')}`

  // A cursor from another server (another DATA_DIR, so another secret), for the same firm and type.
  let foreignServer = ''
  await t.test('another server', async (t2) => {
    const other = await setup(t2)
    foreignServer = await other.cursorOf('acme', 'users')
    t2.not(foreignServer, cursor)
  })

  const cases: Array<[string, string]> = [
    ['a character of the payload flipped', `${version}.${flip(payload, Math.floor(payload.length / 2))}.${signature}`],
    ['the first character of the payload flipped', `${version}.${flip(payload, 0)}.${signature}`],
    ['a character of the signature flipped', `${version}.${payload}.${flip(signature, 10)}`],
    ['the payload of another cursor', `${version}.${fromBeta.split('.')[1]}.${signature}`],
    ['truncated by one character', cursor.slice(0, -1)],
    ['truncated to half', cursor.slice(0, Math.floor(cursor.length / 2))],
    ['without its signature', `${version}.${payload}`],
    ['with an extra part', `${cursor}.x`],
    ['garbage "abc"', 'abc'],
    ['garbage of dots', '..'],
    ['garbage with spaces', 'c1 . x . y'],
    ['garbage unicode', 'c1.é.ü'],
    ['a JSON string', '{"after":"b"}'],
    ['an unknown version prefix', `c9.${payload}.${signature}`],
    ['an unknown version, genuinely signed', v2],
    ['no version', `.${payload}.${signature}`],
    ['a cursor of firm beta used on firm acme', fromBeta],
    ['a cursor of groups used on users', ofGroups],
    ["a cursor signed with another server's secret", foreignServer],
  ]
  for (const [why, bad] of cases) {
    const res = await postExport(app, u.headers, 'acme', 'users', { cursor: bad })
    t.equal(res.statusCode, 400, `${why}: ${res.body}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${why}: a problem`)
    t.equal(res.json().code, 'INVALID_CURSOR', why)
  }
  const before = jobCount(app)

  // Refused by the schema before the cursor is looked at: still a 400, still nothing queued.
  for (const [why, bad] of [['an empty string', ''], ['longer than 2048 characters', `${cursor}${'A'.repeat(2048)}`]]) {
    const res = await postExport(app, u.headers, 'acme', 'users', { cursor: bad })
    t.equal(res.statusCode, 400, `${why}: ${res.body}`)
    t.ok(['INVALID_CURSOR', 'VALIDATION_FAILED'].includes(res.json().code), `${why}: ${res.json().code}`)
  }
  t.equal(jobCount(app), before, 'no job was queued by any refused cursor')

  // The foreign cursors are refused, yet each is valid where it came from.
  const onBeta = await postExport(app, u.headers, 'beta', 'users', { cursor: fromBeta })
  t.equal(onBeta.statusCode, 200, 'the beta cursor works on beta')
  t.equal((await waitForJob(app, u.headers, onBeta.json().requestId)).status, 'Completed')
  const onGroups = await postExport(app, u.headers, 'acme', 'groups', { cursor: ofGroups })
  t.equal(onGroups.statusCode, 200, 'the groups cursor works on groups')
  t.equal((await waitForJob(app, u.headers, onGroups.json().requestId)).status, 'Completed')
  const fresh = await postExport(app, u.headers, 'acme', 'users')
  t.equal(fresh.statusCode, 200, 'the user can start right after the refusals')
  await waitForJob(app, u.headers, fresh.json().requestId)
})

tap.test('a chain over ids that escape to the longest cursors can be followed', async (t) => {
  // Object ids may be 256 characters of anything but NUL. Control characters are the
  // worst case for a cursor: each one is six bytes of JSON (\u0001) in the payload.
  const firm = 'f'.repeat(64)
  const type = 't'.repeat(64)
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '1' })
  const u = await createUser(app, [firm])
  const ids = ['\u0001', '\u0002', '\u001f'].map((c) => c.repeat(256))
  const lines = ids.map((id) => JSON.stringify({ id }))
  const res = await importLines(app, u.headers, firm, type, lines)
  t.equal(res.statusCode, 200, res.body)
  const pages = await exportChain(app, u.headers, firm, type)
  t.same(pages.map((p) => ndjsonLines(p.file)[0]), lines, 'every object once, in key order')
})

tap.test('decodeCursor: any input decodes or throws INVALID_CURSOR, nothing else', async (t) => {
  const signer = createSigner('a'.repeat(40))
  const genuine = signer.encodeCursor({ firmId: 'acme', objectType: 'users', after: 'u-1', offset: 7 })
  const [v, p, s] = genuine.split('.')
  const part = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.base64String(), fc.stringMatching(/^[A-Za-z0-9_-]{0,60}$/))
  const inputs = fc.oneof(
    fc.string({ maxLength: 3000 }),
    fc.string({ unit: 'binary' }),
    fc.tuple(fc.constantFrom('c1', 'c2', 'c3', '', v), part, part).map(([a, b, c]) => `${a}.${b}.${c}`),
    fc.tuple(part, fc.constantFrom(s, '')).map(([b, c]) => `${v}.${b}.${c}`),
    fc.tuple(fc.nat(genuine.length - 1), fc.constantFrom(...B64URL.split(''), '.', '=', '+', '/', ' ', 'é'))
      .map(([i, c]) => genuine.slice(0, i) + c + genuine.slice(i + 1)),
    fc.nat(genuine.length).map((n) => genuine.slice(0, n))
  )
  let decoded = 0
  let refused = 0
  fc.assert(fc.property(inputs, (input) => {
    let out: unknown
    try {
      out = signer.decodeCursor(input, 'acme', 'users')
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== 'INVALID_CURSOR') throw new Error(`decodeCursor(${JSON.stringify(input)}) threw ${String(err)}`)
      refused++
      return
    }
    // Only the genuine cursor itself decodes, to its own position.
    if (input !== genuine || JSON.stringify(out) !== '{"after":"u-1","offset":7}') throw new Error(`decodeCursor(${JSON.stringify(input)}) decoded to ${JSON.stringify(out)}`)
    decoded++
  }), { numRuns: 5000 })
  t.ok(refused > 0, `inputs were refused (${refused})`)
  t.comment(`decoded ${decoded}, refused ${refused}`)
  t.same(signer.decodeCursor(genuine, 'acme', 'users'), { after: 'u-1', offset: 7 }, 'the genuine cursor decodes')

  // Every one-character change is refused, the last character of the signature included
  // (base64url decoding ignores its two low bits, so a lax check accepts three others).
  const accepted: string[] = []
  for (let i = 0; i < genuine.length; i++) {
    for (const c of B64URL + '.=') {
      const changed = genuine.slice(0, i) + c + genuine.slice(i + 1)
      if (changed === genuine) continue
      try {
        signer.decodeCursor(changed, 'acme', 'users')
        accepted.push(`${i}: ${genuine[i]} -> ${c}`)
      } catch (err) {
        if (!(err instanceof AppError) || err.code !== 'INVALID_CURSOR') throw err
      }
    }
  }
  t.same(accepted, [], `no changed cursor is accepted (payload ${p.length}, signature ${s.length} characters)`)
  // Non-strings (a JSON body can hold anything) are refused the same way.
  for (const value of [null, 42, {}, ['c1', 'x', 'y']]) {
    t.throws(() => signer.decodeCursor(value as unknown as string, 'acme', 'users'), { code: 'INVALID_CURSOR' }, JSON.stringify(value))
  }
})

tap.test('encodeCursor then decodeCursor round-trips every position, bound to its firm and type', async (t) => {
  const signer = createSigner('b'.repeat(40))
  const other = createSigner('c'.repeat(40))
  // The positions a server can hand out: firm ids and types by their patterns, object ids
  // of 1 to 256 well-formed characters without NUL (what import and PUT accept).
  const firmId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/)
  const objectType = fc.stringMatching(/^[a-z][a-zA-Z0-9_-]{0,63}$/)
  const controls = fc.constantFrom(...Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)))
  const after = fc.oneof(
    fc.string({ minLength: 1, maxLength: 256 }),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 256 }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 64 }),
    fc.string({ unit: controls, minLength: 200, maxLength: 256 }),
    fc.string({ unit: fc.constantFrom('"', '\\', '\uffff', '😀', '\u2028'), minLength: 1, maxLength: 256 })
  ).filter((s) => s.length >= 1 && [...s].length <= 256 && s.isWellFormed() && !s.includes('\u0000'))
  const offset = fc.option(fc.nat({ max: Number.MAX_SAFE_INTEGER }), { nil: undefined })
  fc.assert(fc.property(firmId, objectType, after, offset, (f, ty, a, o) => {
    const cursor = signer.encodeCursor({ firmId: f, objectType: ty, after: a, offset: o })
    if (cursor.length > 2048) throw new Error(`a cursor of ${cursor.length} characters: more than the contract's maxLength 2048`)
    const back = signer.decodeCursor(cursor, f, ty)
    if (back.after !== a || back.offset !== o) throw new Error('did not round-trip')
    for (const [f2, ty2, s2] of [[f + 'x', ty, signer], [f, ty + 'x', signer], [f, ty, other]] as const) {
      try {
        s2.decodeCursor(cursor, f2, ty2)
      } catch (err) {
        if (err instanceof AppError && err.code === 'INVALID_CURSOR') continue
        throw err
      }
      throw new Error(`a cursor of (${f}, ${ty}) was accepted for (${f2}, ${ty2})`)
    }
  }), { numRuns: 2000 })

  // The longest positions: the widest firm and type, 256 characters of the widest kinds.
  for (const a of ['\u0001'.repeat(256), '\uffff'.repeat(256), '😀'.repeat(256), '"'.repeat(256)]) {
    const cursor = signer.encodeCursor({ firmId: 'F'.repeat(64), objectType: 't'.repeat(64), after: a, offset: Number.MAX_SAFE_INTEGER })
    t.ok(cursor.length <= 2048, `a cursor of ${cursor.length} characters fits the contract`)
    t.same(signer.decodeCursor(cursor, 'F'.repeat(64), 't'.repeat(64)), { after: a, offset: Number.MAX_SAFE_INTEGER })
  }
})

tap.test('a cursor of the earlier version (c1, no offset) still continues its chain', async (t) => {
  const signer = createSigner('d'.repeat(40))
  // How the earlier version sealed a cursor: firm, type and id, NUL-separated, HMAC-signed.
  const key = createHmac('sha256', Buffer.from('d'.repeat(40))).update('bulk-export cursor v1').digest()
  const payload = Buffer.from('acme\0users\0u-9', 'utf8').toString('base64url')
  const c1 = `c1.${payload}.${createHmac('sha256', key).update(`c1.${payload}`).digest('base64url')}`
  t.same(signer.decodeCursor(c1, 'acme', 'users'), { after: 'u-9' }, 'decoded, its offset unknown')
  t.throws(() => signer.decodeCursor(c1, 'acme', 'groups'), { code: 'INVALID_CURSOR' }, 'still bound to its firm and type')
})
