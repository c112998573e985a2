import t from 'tap'
import { build, createUser, importLines } from './helpers/build.js'

t.test('import then read back', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const res = await importLines(app, u.headers, 'acme', 'users', ['{"id":"a","n":1}', '{"id":"b","s":"\\u00e9 é"}'])
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), { imported: 2 })
  const get = await app.inject({ url: '/api/v1/idm/acme/users/b', headers: u.headers })
  t.equal(get.body, '{"id":"b","s":"\\u00e9 é"}')
})
