import tap, { type Test } from 'tap'
import { createUser, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, readStatus, startExport, waitForJob, type JobStatusBody } from './helpers/exports.js'

type App = Awaited<ReturnType<typeof buildExportApp>>

async function list (app: App, headers: Record<string, string>, query = '') {
  const res = await app.inject({ url: `/api/v1/requests${query}`, headers })
  return { statusCode: res.statusCode, body: res.json() as { requests: JobStatusBody[], nextCursor: string | null } & { code?: string } }
}

/** A user with `n` finished exports across two object types, created a millisecond apart. */
async function setup (t: Test, n: number) {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  for (const type of ['users', 'groups']) t.equal((await importLines(app, u.headers, 'acme', type, ['{"id":"a"}'])).statusCode, 200)
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const id = await startExport(app, u.headers, 'acme', i % 2 ? 'groups' : 'users')
    await waitForJob(app, u.headers, id)
    ids.push(id)
  }
  return { app, u, ids }
}

tap.test("a user's own requests, newest first, each as its single status read shows it", async (t) => {
  const { app, u, ids } = await setup(t, 3)
  const other = await createUser(app, ['acme'], 'other')
  await startExport(app, other.headers, 'acme', 'users')
  const { statusCode, body } = await list(app, u.headers)
  t.equal(statusCode, 200)
  t.same(body.requests.map((r) => r.requestId), [...ids].reverse(), 'newest first, and only the caller\'s')
  t.equal(body.nextCursor, null)
  const single = (await readStatus(app, u.headers, ids[0])).json() as JobStatusBody
  const item = body.requests[2]
  t.same({ ...item, result: { ...item.result, fileUrl: null } }, { ...single, result: { ...single.result, fileUrl: null } }, 'the same view (links are signed afresh on each read)')
  t.match(item.result?.fileUrl, /^http:\/\/localhost:80\/api\/v1\/files\//)
})

tap.test('filters by status, firm and object type; a crashed client finds its active job', async (t) => {
  const { app, u, ids } = await setup(t, 4)
  app.services.scheduler.pause()
  const active = await startExport(app, u.headers, 'acme', 'users')
  const found = await list(app, u.headers, '?status=Pending&status=InProgress')
  t.same(found.body.requests.map((r) => r.requestId), [active], 'the one active job')
  t.same((await list(app, u.headers, '?status=Completed&objectType=groups')).body.requests.map((r) => r.requestId), [ids[3], ids[1]])
  t.same((await list(app, u.headers, '?firmId=beta')).body.requests, [], 'another firm: none')
  const bad = await list(app, u.headers, '?status=Running')
  t.equal(bad.statusCode, 400, 'an unknown status is refused')
  app.services.scheduler.start()
})

tap.test('keyset pages: every request exactly once, with a cursor bound to its user and filters', async (t) => {
  const { app, u, ids } = await setup(t, 7)
  // Two requests created in the same millisecond are still ordered (by id) and both listed.
  sqliteOf(app).prepare('UPDATE export_jobs SET created_at = (SELECT created_at FROM export_jobs WHERE id = ?) WHERE id = ?').run(ids[3], ids[4])
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page = await list(app, u.headers, `?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
    t.equal(page.statusCode, 200)
    t.ok(page.body.requests.length <= 3)
    seen.push(...page.body.requests.map((r) => r.requestId))
    cursor = page.body.nextCursor
    pages++
  } while (cursor !== null && pages < 10)
  t.equal(pages, 3, '7 requests, 3 a page')
  t.same([...seen].sort(), [...ids].sort(), 'every request once')
  t.equal(new Set(seen).size, 7)

  const first = await list(app, u.headers, '?limit=2')
  const next = first.body.nextCursor!
  const withOther = await list(app, u.headers, `?limit=2&objectType=users&cursor=${encodeURIComponent(next)}`)
  t.equal(withOther.statusCode, 400, 'a cursor is refused with other filters')
  t.equal(withOther.body.code, 'INVALID_CURSOR')
  const other = await createUser(app, ['acme'], 'other')
  t.equal((await list(app, other.headers, `?cursor=${encodeURIComponent(next)}`)).body.code, 'INVALID_CURSOR', 'and by another user')
  t.equal((await list(app, u.headers, `?cursor=${encodeURIComponent(next.slice(0, -2))}`)).body.code, 'INVALID_CURSOR', 'and when altered')
  for (const limit of ['0', '101', 'ten']) t.equal((await list(app, u.headers, `?limit=${limit}`)).statusCode, 400, `limit=${limit}`)
})
