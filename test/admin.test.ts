import tap from 'tap'
import { createHash, randomUUID } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { admin, ADMIN_TOKEN, build, createUser, sqliteOf } from './helpers/build.js'

const USER_ID = /^user-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const TOKEN_ID = /^token-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// 43 base64url characters carry 258 bits; the contract asks for at least 128 random bits.
const TOKEN = /^bes_[A-Za-z0-9_-]{43,}$/

function countUsers (app: FastifyInstance): number {
  return (sqliteOf(app).prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n
}

/** A request only a live token of a member of `acme` can make: reads object `o1`. */
async function readWith (app: FastifyInstance, token: string): Promise<number> {
  const res = await app.inject({ url: '/api/v1/idm/acme/things/o1', headers: { authorization: `Bearer ${token}` } })
  return res.statusCode
}

function assertUnauthenticated (t: Pick<typeof tap, 'equal' | 'match'>, res: { statusCode: number, headers: Record<string, unknown>, json: () => any }, why: string): void {
  t.equal(res.statusCode, 401, why)
  t.equal(res.headers['www-authenticate'], 'Bearer', `${why}: WWW-Authenticate`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, `${why}: problem+json`)
  t.equal(res.json().code, 'UNAUTHENTICATED', `${why}: code`)
}

tap.test('PUT firm creates, is idempotent and renames', async (t) => {
  const app = await build(t)
  const url = '/api/v1/admin/firms/acme'

  const created = await app.inject({ method: 'PUT', url, headers: admin })
  t.equal(created.statusCode, 201, created.body)
  const firm = created.json()
  t.equal(firm.firmId, 'acme')
  t.equal(firm.name, 'acme', 'the name defaults to the id')
  t.ok(!Number.isNaN(Date.parse(firm.createdAt)), 'createdAt is a timestamp')

  const again = await app.inject({ method: 'PUT', url, headers: admin })
  t.equal(again.statusCode, 200, 'a second PUT finds the firm')
  t.same(again.json(), firm, 'and changes nothing')

  const renamed = await app.inject({ method: 'PUT', url, headers: admin, payload: { name: 'Acme Corporation' } })
  t.equal(renamed.statusCode, 200, renamed.body)
  t.same(renamed.json(), { ...firm, name: 'Acme Corporation' }, 'renamed, createdAt kept')

  const emptyJson = await app.inject({ method: 'PUT', url, headers: { ...admin, 'content-type': 'application/json' }, payload: '' })
  t.equal(emptyJson.statusCode, 200, `empty body with Content-Type: application/json: ${emptyJson.body}`)
  t.equal(emptyJson.json().name, 'Acme Corporation', 'an empty body keeps the name')

  const createdWithName = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/globex', headers: { ...admin, 'content-type': 'application/json' }, payload: '' })
  t.equal(createdWithName.statusCode, 201, 'an empty JSON body creates too')

  const named = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/initech', headers: admin, payload: { name: 'Initech' } })
  t.equal(named.statusCode, 201)
  t.equal(named.json().name, 'Initech', 'created with the given name')

  const rows = sqliteOf(app).prepare('SELECT id, name FROM firms ORDER BY id').all()
  t.same(rows, [{ id: 'acme', name: 'Acme Corporation' }, { id: 'globex', name: 'globex' }, { id: 'initech', name: 'Initech' }])
})

tap.test('PUT firm refuses invalid ids and names', async (t) => {
  const app = await build(t)
  for (const id of ['-acme', 'a.b', 'a%20b', 'x'.repeat(65)]) {
    const res = await app.inject({ method: 'PUT', url: `/api/v1/admin/firms/${id}`, headers: admin })
    t.equal(res.statusCode, 400, `firm id ${id}`)
    t.equal(res.json().code, 'VALIDATION_FAILED')
  }
  const empty = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: admin, payload: { name: '' } })
  t.equal(empty.statusCode, 400, 'an empty name')
  const firms = sqliteOf(app).prepare('SELECT count(*) AS n FROM firms').get() as { n: number }
  t.equal(firms.n, 0, 'nothing was created')
})

tap.test('POST users creates a user with a strong token', async (t) => {
  const app = await build(t)
  await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: admin })
  await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/globex', headers: admin })

  const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name: 'CRM sync', firms: ['acme', 'globex'] } })
  t.equal(res.statusCode, 201, res.body)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['firms', 'name', 'token', 'tokenId', 'userId'])
  t.match(body.userId, USER_ID)
  t.match(body.tokenId, TOKEN_ID)
  t.match(body.token, TOKEN)
  t.equal(body.name, 'CRM sync')
  t.same(body.firms, ['acme', 'globex'])

  const other = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name: 'CRM sync', firms: ['acme'] } })
  t.not(other.json().token, body.token, 'tokens differ')
  t.not(other.json().userId, body.userId, 'user ids differ')
  t.equal(countUsers(app), 2)
})

tap.test('POST users with an unknown firm creates nothing', async (t) => {
  const app = await build(t)
  await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: admin })
  const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name: 'x', firms: ['acme', 'nope'] } })
  t.equal(res.statusCode, 400, res.body)
  t.equal(res.json().code, 'VALIDATION_FAILED')
  t.match(res.json().detail, /nope/, 'the detail names the unknown firm')
  t.equal(countUsers(app), 0, 'no user')
  const tokens = sqliteOf(app).prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }
  t.equal(tokens.n, 0, 'no token')

  const none = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name: 'x', firms: [] } })
  t.equal(none.statusCode, 400, 'a user needs a firm')
  t.equal(countUsers(app), 0)
})

tap.test('tokens are stored only as hashes', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const secret = u.token.slice('bes_'.length)
  const sqlite = sqliteOf(app)

  const hashes = sqlite.prepare('SELECT hash FROM tokens WHERE id = ?').all(u.tokenId) as Array<{ hash: string }>
  t.same(hashes, [{ hash: createHash('sha256').update(u.token).digest('hex') }], 'the SHA-256 of the token is kept')

  const tables = sqlite.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>
  t.ok(tables.some((x) => x.name === 'tokens'))
  let cells = 0
  for (const { name } of tables) {
    for (const row of sqlite.prepare(`SELECT * FROM "${name}"`).all() as Array<Record<string, unknown>>) {
      for (const [column, value] of Object.entries(row)) {
        cells++
        const text = Buffer.isBuffer(value) ? value.toString('latin1') : String(value)
        t.notOk(text.includes(secret), `${name}.${column} does not hold the token`)
      }
    }
  }
  t.ok(cells > 0, 'cells were scanned')

  // Nor anywhere in the database files, free pages and the WAL included.
  for (const file of [sqliteOf(app).name, `${sqliteOf(app).name}-wal`]) {
    if (!existsSync(file)) continue
    t.notOk(readFileSync(file).includes(Buffer.from(secret)), `${file} does not hold the token`)
  }
})

tap.test('tokens are listed without secrets, issued and revoked', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const put = await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/things/o1', headers: u.headers, payload: { id: 'o1' } })
  t.equal(put.statusCode, 201, put.body)
  const tokensUrl = `/api/v1/admin/users/${u.userId}/tokens`

  const issued = await app.inject({ method: 'POST', url: tokensUrl, headers: admin })
  t.equal(issued.statusCode, 201, issued.body)
  const second = issued.json()
  t.same(Object.keys(second).sort(), ['token', 'tokenId'])
  t.match(second.token, TOKEN)
  t.match(second.tokenId, TOKEN_ID)
  t.not(second.token, u.token)
  t.equal(await readWith(app, u.token), 200, 'the first token works')
  t.equal(await readWith(app, second.token), 200, 'the second token works')

  const list = await app.inject({ url: tokensUrl, headers: admin })
  t.equal(list.statusCode, 200, list.body)
  const { tokens } = list.json()
  t.same(tokens.map((x: { tokenId: string }) => x.tokenId).sort(), [u.tokenId, second.tokenId].sort())
  for (const info of tokens) {
    t.same(Object.keys(info).sort(), ['createdAt', 'prefix', 'revokedAt', 'tokenId'])
    t.equal(info.revokedAt, null)
    const token = info.tokenId === u.tokenId ? u.token : second.token
    t.ok(token.startsWith(info.prefix) && info.prefix.length >= 5 && info.prefix.length < 20, 'the prefix is the start of the token')
  }
  t.notOk(list.body.includes(u.token.slice(12)), 'the first secret is not listed')
  t.notOk(list.body.includes(second.token.slice(12)), 'the second secret is not listed')

  const revoke = await app.inject({ method: 'DELETE', url: `${tokensUrl}/${u.tokenId}`, headers: admin })
  t.equal(revoke.statusCode, 204, revoke.body)
  t.equal(revoke.body, '')
  t.equal(await readWith(app, u.token), 401, 'the revoked token is refused')
  t.equal(await readWith(app, second.token), 200, 'the other token still works')

  const revokedAt = (await app.inject({ url: tokensUrl, headers: admin })).json().tokens.find((x: { tokenId: string }) => x.tokenId === u.tokenId).revokedAt
  t.ok(!Number.isNaN(Date.parse(revokedAt)), 'the list shows when it was revoked')

  const twice = await app.inject({ method: 'DELETE', url: `${tokensUrl}/${u.tokenId}`, headers: admin })
  t.equal(twice.statusCode, 204, 'revoking twice is fine')
  const after = (await app.inject({ url: tokensUrl, headers: admin })).json().tokens.find((x: { tokenId: string }) => x.tokenId === u.tokenId)
  t.equal(after.revokedAt, revokedAt, 'and changes nothing')
  t.equal(await readWith(app, u.token), 401, 'still revoked')
})

tap.test('unknown users and tokens are 404', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const v = await createUser(app, ['acme'], 'other')
  const ghost = `user-${randomUUID()}`

  for (const [method, url] of [
    ['GET', `/api/v1/admin/users/${ghost}/tokens`],
    ['POST', `/api/v1/admin/users/${ghost}/tokens`],
    ['DELETE', `/api/v1/admin/users/${ghost}/tokens/${u.tokenId}`],
    ['DELETE', `/api/v1/admin/users/${u.userId}/tokens/token-${randomUUID()}`],
    ['DELETE', `/api/v1/admin/users/${u.userId}/tokens/${v.tokenId}`],
  ] as const) {
    const res = await app.inject({ method, url, headers: admin })
    t.equal(res.statusCode, 404, `${method} ${url}`)
    t.equal(res.json().code, 'NOT_FOUND')
  }
  t.equal(await readWith(app, v.token), 404, "another user's token was not revoked")
  const bad = await app.inject({ url: '/api/v1/admin/users/bob/tokens', headers: admin })
  t.equal(bad.statusCode, 400, 'a malformed user id')
  const tokens = sqliteOf(app).prepare('SELECT count(*) AS n FROM tokens WHERE revoked_at IS NOT NULL').get() as { n: number }
  t.equal(tokens.n, 0, 'nothing was revoked')
})

tap.test('the admin API takes only ADMIN_TOKEN', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const requests = [
    { method: 'PUT', url: '/api/v1/admin/firms/globex' },
    { method: 'POST', url: '/api/v1/admin/users', payload: { name: 'x', firms: ['acme'] } },
    { method: 'GET', url: `/api/v1/admin/users/${u.userId}/tokens` },
    { method: 'POST', url: `/api/v1/admin/users/${u.userId}/tokens` },
    { method: 'DELETE', url: `/api/v1/admin/users/${u.userId}/tokens/${u.tokenId}` },
  ] as const
  const credentials: Array<[string, Record<string, string>]> = [
    ['no token', {}],
    ['a wrong admin token', { authorization: `Bearer ${ADMIN_TOKEN}x` }],
    ['the admin token without Bearer', { authorization: ADMIN_TOKEN }],
    ['a user token', u.headers],
  ]
  for (const request of requests) {
    for (const [why, headers] of credentials) {
      const res = await app.inject({ ...request, headers })
      assertUnauthenticated(t, res, `${request.method} ${request.url} with ${why}`)
    }
  }
  t.equal(countUsers(app), 1, 'no user was created')
  const firms = sqliteOf(app).prepare('SELECT count(*) AS n FROM firms').get() as { n: number }
  t.equal(firms.n, 1, 'no firm was created')
  t.equal(await readWith(app, u.token), 404, 'the token was not revoked')
})

tap.test('the admin API is closed when ADMIN_TOKEN is unset', async (t) => {
  const app = await build(t, { ADMIN_TOKEN: '' })
  t.equal(app.config.adminToken, undefined)
  for (const headers of [{}, admin, { authorization: 'Bearer undefined' }, { authorization: 'Bearer ' }]) {
    const res = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers })
    assertUnauthenticated(t, res, `with ${JSON.stringify(headers)}`)
  }
  const firms = sqliteOf(app).prepare('SELECT count(*) AS n FROM firms').get() as { n: number }
  t.equal(firms.n, 0, 'no firm was created')
})
