import t from 'tap'
import { randomBytes } from 'node:crypto'
import { admin, build, createUser, importLines, sqliteOf } from './helpers/build.js'

t.test('user routes refuse a missing, malformed, unknown or revoked token', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const put = await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/a', headers: u.headers, payload: { id: 'a', v: 1 } })
  t.equal(put.statusCode, 201, put.body)
  const ok = await app.inject({ url: '/api/v1/idm/acme/users/a', headers: u.headers })
  t.equal(ok.statusCode, 200, 'the live token reads the object')

  const revokedUser = await createUser(app, ['acme'], 'revoked')
  const revoke = await app.inject({ method: 'DELETE', url: `/api/v1/admin/users/${revokedUser.userId}/tokens/${revokedUser.tokenId}`, headers: admin })
  t.equal(revoke.statusCode, 204)

  const cases: Array<[string, Record<string, string>]> = [
    ['no Authorization header', {}],
    ['an empty header', { authorization: '' }],
    ['Basic credentials', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
    ['Bearer without a token', { authorization: 'Bearer' }],
    ['the token without Bearer', { authorization: u.token }],
    ['two tokens', { authorization: `Bearer ${u.token} ${u.token}` }],
    ['an unknown token', { authorization: `Bearer bes_${randomBytes(32).toString('base64url')}` }],
    ['a token with one character changed', { authorization: `Bearer ${u.token.slice(0, -1)}${u.token.endsWith('A') ? 'B' : 'A'}` }],
    ['the admin token', admin],
    ['a revoked token', revokedUser.headers],
  ]
  const requests = [
    { method: 'GET', url: '/api/v1/idm/acme/users/a' },
    { method: 'PUT', url: '/api/v1/idm/acme/users/a', payload: { id: 'a', v: 2 } },
    { method: 'DELETE', url: '/api/v1/idm/acme/users/a' },
  ] as const
  for (const [why, headers] of cases) {
    for (const request of requests) {
      const res = await app.inject({ ...request, headers })
      const what = `${request.method} with ${why}`
      t.equal(res.statusCode, 401, what)
      t.equal(res.headers['www-authenticate'], 'Bearer', `${what}: WWW-Authenticate`)
      t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: problem+json`)
      t.match(res.json(), { status: 401, code: 'UNAUTHENTICATED', type: 'urn:bulk-export:problem:unauthenticated' }, what)
    }
    const imp = await importLines(app, headers, 'acme', 'users', ['{"id":"a","v":3}'])
    t.equal(imp.statusCode, 401, `import with ${why}`)
    t.equal(imp.headers['www-authenticate'], 'Bearer')
  }

  const after = await app.inject({ url: '/api/v1/idm/acme/users/a', headers: u.headers })
  t.equal(after.body, '{"id":"a","v":1}', 'no refused request changed the object')
})

t.test('a user cannot touch another firm', async (t) => {
  const app = await build(t)
  const a = await createUser(app, ['acme'], 'acme user')
  const b = await createUser(app, ['globex'], 'globex user')
  const seed = await importLines(app, b.headers, 'globex', 'users', ['{"id":"g1","v":1}', '{"id":"g2","v":1}'])
  t.equal(seed.statusCode, 200, seed.body)

  const requests = [
    { method: 'GET', url: '/api/v1/idm/globex/users/g1' },
    { method: 'GET', url: '/api/v1/idm/globex/users/missing' },
    { method: 'PUT', url: '/api/v1/idm/globex/users/g1', payload: { id: 'g1', v: 'hacked' } },
    { method: 'PUT', url: '/api/v1/idm/globex/users/g3', payload: { id: 'g3' } },
    { method: 'DELETE', url: '/api/v1/idm/globex/users/g2' },
    { method: 'GET', url: '/api/v1/idm/nosuchfirm/users/g1' },
    { method: 'PUT', url: '/api/v1/idm/nosuchfirm/users/g1', payload: { id: 'g1' } },
  ] as const
  for (const request of requests) {
    const res = await app.inject({ ...request, headers: a.headers })
    t.equal(res.statusCode, 403, `${request.method} ${request.url}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.match(res.json(), { code: 'FORBIDDEN', status: 403, type: 'urn:bulk-export:problem:forbidden' })
  }
  for (const firm of ['globex', 'nosuchfirm']) {
    const imp = await importLines(app, a.headers, firm, 'users', ['{"id":"g1","v":"hacked"}', '{"id":"g9"}'])
    t.equal(imp.statusCode, 403, `import into ${firm}`)
    t.equal(imp.json().code, 'FORBIDDEN')
  }

  // The firm's owner sees its data untouched.
  t.equal((await app.inject({ url: '/api/v1/idm/globex/users/g1', headers: b.headers })).body, '{"id":"g1","v":1}')
  t.equal((await app.inject({ url: '/api/v1/idm/globex/users/g2', headers: b.headers })).statusCode, 200, 'g2 not deleted')
  t.equal((await app.inject({ url: '/api/v1/idm/globex/users/g3', headers: b.headers })).statusCode, 404, 'g3 not created')
  t.equal((await app.inject({ url: '/api/v1/idm/globex/users/g9', headers: b.headers })).statusCode, 404, 'g9 not imported')
  const rows = sqliteOf(app).prepare('SELECT firm_id AS firmId, id FROM objects ORDER BY firm_id, id').all()
  t.same(rows, [{ firmId: 'globex', id: 'g1' }, { firmId: 'globex', id: 'g2' }], 'nothing was written anywhere')

  // And the member of its own firm is not blocked by this check.
  const own = await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/a1', headers: a.headers, payload: { id: 'a1' } })
  t.equal(own.statusCode, 201, own.body)
})

t.test('a member of several firms reaches each of them', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme', 'globex'])
  for (const firm of ['acme', 'globex']) {
    const res = await app.inject({ method: 'PUT', url: `/api/v1/idm/${firm}/users/x`, headers: u.headers, payload: { id: 'x' } })
    t.equal(res.statusCode, 201, `${firm}: ${res.body}`)
  }
  const other = await app.inject({ url: '/api/v1/idm/initech/users/x', headers: u.headers })
  t.equal(other.statusCode, 403)
})
