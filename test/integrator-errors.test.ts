import tap from 'tap'
import { admin, ADMIN_TOKEN, createUser, importLines } from './helpers/build.js'
import { buildExportApp, exportPage, postExport, readStatus, startExport, waitForJob } from './helpers/exports.js'

tap.test('a cursor in the query string is refused with where it belongs, and queues nothing', async (t) => {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '1' })
  const u = await createUser(app, ['acme'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}'])).statusCode, 200)
  const { result } = await exportPage(app, u.headers, 'acme', 'users')
  const res = await app.inject({ method: 'POST', url: `/api/v1/idm/acme/users/export?cursor=${encodeURIComponent(result.nextCursor!)}`, headers: u.headers })
  t.equal(res.statusCode, 400, res.body)
  t.equal(res.json().code, 'VALIDATION_FAILED')
  t.match(res.json().detail, /query parameter 'cursor' is not taken here: send it in the JSON body/)
  t.same(res.json().errors, [{ field: 'query/cursor', message: 'is not a query parameter of this operation', suggestion: 'body/cursor' }])
  t.same((await app.inject({ url: '/api/v1/requests', headers: u.headers })).json().requests.length, 1, 'no job was queued')

  const list = await app.inject({ url: '/api/v1/requests?lmit=5', headers: u.headers })
  t.equal(list.statusCode, 400)
  t.match(list.json().detail, /did you mean 'limit'\?/, 'a near miss is named')
  const none = await app.inject({ url: '/api/v1/idm/acme/collections?verbose=1', headers: u.headers })
  t.match(none.json().detail, /takes no query parameters/)
})

tap.test('a misnamed body field is named with the field that was meant', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  for (const [sent, meant] of [['next_cursor', 'cursor'], ['nextCursor', 'cursor'], ['cursr', 'cursor']]) {
    const res = await postExport(app, u.headers, 'acme', 'users', { [sent]: 'c2.x.y' })
    t.equal(res.statusCode, 400, sent)
    t.match(res.json().detail, new RegExp(`body/${sent} is not a field of this operation; did you mean '${meant}'\\?`), sent)
    t.same(res.json().errors, [{ field: `/${sent}`, message: 'is not a field of this operation', suggestion: meant }])
  }
  const far = await postExport(app, u.headers, 'acme', 'users', { colour: 'red' })
  t.same(far.json().errors, [{ field: '/colour', message: 'is not a field of this operation' }], 'no suggestion when nothing is close')
})

tap.test('curl -d without a Content-Type is told to send JSON', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const res = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/export', headers: { ...u.headers, 'content-type': 'application/x-www-form-urlencoded' }, payload: '{"cursor":null}' })
  t.equal(res.statusCode, 415)
  t.equal(res.json().code, 'UNSUPPORTED_MEDIA_TYPE')
  t.match(res.json().detail, /takes a body of Content-Type application\/json, not application\/x-www-form-urlencoded: curl -d sends that unless told otherwise; add -H 'Content-Type: application\/json'/)
  const imp = await app.inject({ method: 'POST', url: '/api/v1/idm/acme/users/import', headers: { ...u.headers, 'content-type': 'application/json' }, payload: '{"id":"a"}' })
  t.equal(imp.statusCode, 415)
  t.match(imp.json().detail, /Content-Type application\/x-ndjson/, 'the import names its own type')
})

tap.test('the 409 names the firm and object type of the active job', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  app.services.scheduler.pause()
  const active = await startExport(app, u.headers, 'acme', 'groups')
  const res = await postExport(app, u.headers, 'acme', 'users')
  t.equal(res.statusCode, 409)
  t.match(res.json(), { code: 'EXPORT_ALREADY_ACTIVE', activeRequestId: active, activeFirmId: 'acme', activeObjectType: 'groups' })
  t.match(res.json().detail, new RegExp(`${active} of acme/groups`))
  app.services.scheduler.start()
})

tap.test('the admin token on the user API, and a user token on the admin API, are told so', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const wrongWay = await app.inject({ url: '/api/v1/idm/acme/collections', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(wrongWay.statusCode, 401)
  t.match(wrongWay.json().detail, /ADMIN_TOKEN, which only opens the admin API; the user API takes a user token/)
  const otherWay = await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/globex', headers: u.headers })
  t.equal(otherWay.statusCode, 401)
  t.match(otherWay.json().detail, /this is a user token/)
  const unknown = await app.inject({ url: '/api/v1/idm/acme/collections', headers: { authorization: 'Bearer bes_nope' } })
  t.match(unknown.json().detail, /unknown or revoked/, 'an unknown token is just unknown')
  t.equal((await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/globex', headers: admin })).statusCode, 201, 'the right tokens still work')
})

tap.test('error.retryable tells whether starting the same page again can succeed', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  app.services.scheduler.pause()
  const id = await startExport(app, u.headers, 'acme', 'users')
  const cancelled = (await app.inject({ method: 'DELETE', url: `/api/v1/request/${id}`, headers: u.headers })).json()
  t.same(cancelled.error, { code: 'CANCELLED', message: 'the request was cancelled by its owner', retryable: true })
  app.services.scheduler.start()
  // The rest of the codes, as their jobs would read.
  const sqlite = (await import('./helpers/build.js')).sqliteOf(app)
  for (const [code, retryable] of [['EXPORT_WRITE_FAILED', true], ['EXPORT_READ_FAILED', true], ['EXPORT_FAILED', false]] as const) {
    const other = await startExport(app, u.headers, 'acme', 'users')
    await waitForJob(app, u.headers, other)
    sqlite.prepare("UPDATE export_jobs SET status = 'Failed', error_code = ?, error_message = 'm' WHERE id = ?").run(code, other)
    t.equal((await readStatus(app, u.headers, other)).json().error.retryable, retryable, code)
  }
})

tap.test('a firm lists its collections with their counts, so a typo is caught before a sync runs', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme', 'beta'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}', '{"id":"a"}'])).statusCode, 200)
  t.equal((await importLines(app, u.headers, 'acme', 'groups', ['{"id":"g"}'])).statusCode, 200)
  t.equal((await importLines(app, u.headers, 'beta', 'users', ['{"id":"z"}'])).statusCode, 200)
  const list = async (firm: string) => (await app.inject({ url: `/api/v1/idm/${firm}/collections`, headers: u.headers })).json()
  t.same(await list('acme'), { firmId: 'acme', collections: [{ objectType: 'groups', objects: 1 }, { objectType: 'users', objects: 2 }] })
  t.notOk((await list('acme')).collections.some((c: { objectType: string }) => c.objectType === 'userz'), 'userz holds nothing')

  // The counts follow every write: PUT, DELETE, a re-import.
  await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/c', headers: u.headers, payload: { id: 'c' } })
  await app.inject({ method: 'DELETE', url: '/api/v1/idm/acme/groups/g', headers: u.headers })
  t.same((await list('acme')).collections, [{ objectType: 'users', objects: 3 }], 'an emptied collection is no longer listed')
  t.same((await list('beta')).collections, [{ objectType: 'users', objects: 1 }], 'each firm its own')
  const other = await createUser(app, ['globex'], 'other')
  t.equal((await app.inject({ url: '/api/v1/idm/acme/collections', headers: other.headers })).statusCode, 403, 'only for its members')
})

tap.test('collection counts follow re-imports and updates, and an upgraded database counts what it already held', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const count = async () => (await app.inject({ url: '/api/v1/idm/acme/collections', headers: u.headers })).json().collections
  t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}'])).statusCode, 200)
  t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"b","v":2}', '{"id":"c"}'])).statusCode, 200)
  t.same(await count(), [{ objectType: 'users', objects: 3 }], 'a re-import counts only the new ids')
  await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/a', headers: u.headers, payload: { id: 'a', v: 3 } })
  t.same(await count(), [{ objectType: 'users', objects: 3 }], 'an update counts nothing')
  t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"d"}', 'not json'])).statusCode, 400)
  t.same(await count(), [{ objectType: 'users', objects: 3 }], 'a refused import counts nothing')
})

tap.test('the migration that adds the counters counts the objects a database already held', async (t) => {
  const { mkdtempSync, cpSync, rmSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const Database = (await import('better-sqlite3')).default
  const { drizzle } = await import('drizzle-orm/better-sqlite3')
  const { migrate } = await import('drizzle-orm/better-sqlite3/migrator')
  const { openSqliteStore } = await import('../src/store/sqlite/sqlite-store.js')
  const dir = mkdtempSync(join(tmpdir(), 'bes-migrate-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // A database as the version before the counters left it: migrations 0000 and 0001 only.
  const older = join(dir, 'migrations')
  const later = (path: string): boolean => /(^|\/)(?!000[01])\d{4}_[^/]*$/.test(path)
  cpSync(new URL('../db/migrations', import.meta.url), older, { recursive: true, filter: (src) => !later(src) })
  const journal = JSON.parse((await import('node:fs')).readFileSync(join(older, 'meta/_journal.json'), 'utf8'))
  journal.entries = journal.entries.filter((e: { tag: string }) => /^000[01]_/.test(e.tag));
  (await import('node:fs')).writeFileSync(join(older, 'meta/_journal.json'), JSON.stringify(journal))
  const sqlite = new Database(join(dir, 'bulk-export.sqlite'))
  migrate(drizzle(sqlite), { migrationsFolder: older })
  const insert = sqlite.prepare("INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?, ?, ?, '{}', 0, 0)")
  for (let i = 0; i < 5; i++) insert.run('acme', 'users', `u-${i}`)
  insert.run('acme', 'groups', 'g-1')
  insert.run('beta', 'users', 'u-1')
  sqlite.close()
  const store = openSqliteStore(dir)
  t.same(await store.objects.selectCollections('acme'), [{ type: 'groups', objects: 1 }, { type: 'users', objects: 5 }])
  t.equal(await store.objects.countObjects('beta', 'users'), 1)
  await store.close()
})
