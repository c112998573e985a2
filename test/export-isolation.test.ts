import tap from 'tap'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { createUser, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, postExport, readStatus, startExport, waitForJob } from './helpers/exports.js'

function jobCount (app: FastifyInstance): number {
  return (sqliteOf(app).prepare('SELECT count(*) AS n FROM export_jobs').get() as { n: number }).n
}

/** Two users of acme and one of globex; `owner` has a completed export of acme/users. */
async function setup (t: Parameters<typeof buildExportApp>[0]) {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '2' })
  const owner = await createUser(app, ['acme'], 'owner')
  const colleague = await createUser(app, ['acme'], 'colleague')
  const stranger = await createUser(app, ['globex'], 'stranger')
  const res = await importLines(app, owner.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}'])
  if (res.statusCode !== 200) throw new Error(res.body)
  const requestId = await startExport(app, owner.headers, 'acme', 'users')
  const done = await waitForJob(app, owner.headers, requestId)
  return { app, owner, colleague, stranger, requestId, done }
}

// One app for the file: its first job waits for a worker thread to start.
let sharedSetup: ReturnType<typeof setup> | undefined
function shared (): ReturnType<typeof setup> {
  sharedSetup ??= setup(tap)
  return sharedSetup
}

tap.test("another user's request is a 404, as if it did not exist", async (t) => {
  const { app, owner, colleague, stranger, requestId, done } = await shared()
  t.equal(done.status, 'Completed')

  const own = await readStatus(app, owner.headers, requestId)
  t.equal(own.statusCode, 200, 'the owner sees it')

  const unknown = await readStatus(app, owner.headers, `export-${randomUUID()}`)
  t.equal(unknown.statusCode, 404, 'an unknown, well-formed id')
  t.equal(unknown.json().code, 'NOT_FOUND')

  for (const [who, u] of [['a user of the same firm', colleague], ['a user of another firm', stranger]] as const) {
    const res = await readStatus(app, u.headers, requestId)
    t.equal(res.statusCode, 404, who)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${who}: a problem`)
    const body = res.json()
    t.equal(body.code, 'NOT_FOUND', who)
    t.notOk(res.body.includes('"status":"Completed"') || 'result' in body || 'firmId' in body, `${who}: nothing of the request leaks`)
    const same = { ...unknown.json(), detail: '', instance: '' }
    t.same({ ...body, detail: '', instance: '' }, same, `${who}: the same answer as for an id that does not exist`)
  }

  // The colleague's own slot is untouched by the owner's jobs and the reverse.
  const theirs = await startExport(app, colleague.headers, 'acme', 'users')
  t.equal((await readStatus(app, owner.headers, theirs)).statusCode, 404, "and the owner cannot see the colleague's")
  await waitForJob(app, colleague.headers, theirs)
})

tap.test('malformed request ids are a 400', async (t) => {
  const { app, owner, requestId } = await shared()
  for (const id of ['abc', 'export-123', `request-${randomUUID()}`, requestId.toUpperCase().replace('EXPORT', 'export'), `${requestId}x`]) {
    const res = await readStatus(app, owner.headers, encodeURIComponent(id))
    t.equal(res.statusCode, 400, `${id}: ${res.body}`)
    t.equal(res.json().code, 'VALIDATION_FAILED', id)
  }
})

tap.test('a firm the user is not in is a 403 and queues nothing', async (t) => {
  const { app, owner, stranger } = await shared()
  const before = jobCount(app)
  for (const [why, firm, headers] of [
    ['a firm of another user', 'acme', stranger.headers],
    ['another existing firm', 'globex', owner.headers],
    ['a firm that does not exist', 'nowhere', owner.headers],
  ] as const) {
    for (const body of [undefined, { cursor: null }, { cursor: 'c1.abc.def' }]) {
      const res = await postExport(app, headers, firm, 'users', body)
      t.equal(res.statusCode, 403, `${why} (${JSON.stringify(body)}): ${res.body}`)
      t.equal(res.json().code, 'FORBIDDEN', why)
    }
  }
  t.equal(jobCount(app), before, 'no job was queued')
  const own = await postExport(app, stranger.headers, 'globex', 'users')
  t.equal(own.statusCode, 200, 'the stranger can export its own firm')
  await waitForJob(app, stranger.headers, own.json().requestId)
})

tap.test('no or a bad token is a 401', async (t) => {
  const { app, requestId } = await shared()
  const before = jobCount(app)
  for (const headers of [{}, { authorization: 'Bearer bes_not-a-token' }, { authorization: 'Basic dXNlcjpwdw==' }] as Array<Record<string, string>>) {
    const why = JSON.stringify(headers)
    const start = await postExport(app, headers, 'acme', 'users')
    t.equal(start.statusCode, 401, `POST export with ${why}`)
    t.equal(start.json().code, 'UNAUTHENTICATED')
    t.equal(start.headers['www-authenticate'], 'Bearer')
    const status = await readStatus(app, headers, requestId)
    t.equal(status.statusCode, 401, `GET request with ${why}`)
    t.equal(status.json().code, 'UNAUTHENTICATED')
    t.notOk(status.body.includes('Completed'), 'nothing of the request leaks')
  }
  t.equal(jobCount(app), before, 'no job was queued')
})
