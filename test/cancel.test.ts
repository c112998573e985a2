import tap from 'tap'
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { createUser, exportGate, filesDirOf, sqliteOf } from './helpers/build.js'
import { buildExportApp, downloadFile, postExport, readStatus, startExport, waitForJob, type JobStatusBody, seedObjects } from './helpers/exports.js'

/** Enough objects that an export runs for about a second on this machine. */
const BIG = 100_000

async function cancel (app: FastifyInstance, headers: Record<string, string>, requestId: string) {
  return app.inject({ method: 'DELETE', url: `/api/v1/request/${requestId}`, headers })
}

function jobRow (app: FastifyInstance, id: string) {
  return sqliteOf(app).prepare(`SELECT status, error_code AS errorCode, started_at AS startedAt, attempts, file_name AS fileName
    FROM export_jobs WHERE id = ?`).get(id) as { status: string, errorCode: string | null, startedAt: number | null, attempts: number, fileName: string | null }
}

/** Polls `fn` until it returns a value other than undefined; fails at the deadline. */
async function until<T> (what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 120_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await fn()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Waits until the job runs and its worker has written part of the temporary file. */
async function catchRunning (app: FastifyInstance, headers: Record<string, string>, requestId: string): Promise<JobStatusBody> {
  return until(`${requestId} InProgress with a partial file`, async () => {
    const body = (await readStatus(app, headers, requestId)).json() as JobStatusBody
    if (body.status === 'Completed' || body.status === 'Failed') {
      throw new Error(`${requestId} finished (${body.status}) before it could be caught running`)
    }
    const tmp = readdirSync(filesDirOf(app)).some((name) => name.startsWith(`.${requestId}.`) && name.endsWith('.tmp'))
    return body.status === 'InProgress' && body.progress.processed > 0 && tmp ? body : undefined
  })
}

/**
 * Records every name that appears in the files directory. `flush()` returns once all
 * earlier events are delivered (inotify keeps their order: a sentinel file comes last).
 */
function watchFiles (t: { teardown: (fn: () => void) => void }, dir: string) {
  const seen: string[] = []
  const watcher = watch(dir, (_event, name) => { if (name) seen.push(String(name)) })
  t.teardown(() => watcher.close())
  return {
    seen,
    async flush (): Promise<void> {
      const sentinel = `sentinel-${randomUUID()}`
      writeFileSync(join(dir, sentinel), '')
      await until('the sentinel event', () => seen.includes(sentinel) ? true : undefined, 60_000)
      rmSync(join(dir, sentinel))
    },
  }
}

tap.test('cancelling a running export: 202 Failed/CANCELLED, the slot is free at once, the worker stops', async (t) => {
  const app = await buildExportApp(t, { EXPORT_WORKERS: '1' })
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', BIG)
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const files = watchFiles(t, filesDirOf(app))

  const running = await catchRunning(app, u.headers, requestId)
  t.ok(running.progress.processed < BIG, `caught mid-way (${running.progress.processed} of ${BIG})`)

  const res = await cancel(app, u.headers, requestId)
  t.equal(res.statusCode, 202, res.body)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json() as JobStatusBody
  t.equal(body.requestId, requestId)
  t.equal(body.status, 'Failed', 'one of the four statuses: Failed')
  t.equal(body.error?.code, 'CANCELLED')
  t.ok(body.error?.message && body.error.message.length > 0, 'with a message')
  t.notOk('result' in body, 'no result')
  t.equal(res.headers['retry-after'], undefined, 'nothing to poll for')

  // The slot is free before the worker has even stopped.
  const next = await postExport(app, u.headers, 'acme', 'groups')
  t.equal(next.statusCode, 200, `a POST right after the DELETE is accepted: ${next.body}`)
  const nextId = next.json().requestId as string

  // Until everything settles the cancelled job reads Failed/CANCELLED, never anything else.
  const statuses = new Set<string>()
  await until('the worker to stop and the next job to finish', async () => {
    const s = (await readStatus(app, u.headers, requestId)).json() as JobStatusBody
    statuses.add(`${s.status}/${s.error?.code}`)
    const n = (await readStatus(app, u.headers, nextId)).json() as JobStatusBody
    return app.services.scheduler.runningCount() === 0 && n.status === 'Completed' ? true : undefined
  })
  t.same([...statuses], ['Failed/CANCELLED'], 'the status stayed Failed/CANCELLED')
  const after = await waitForJob(app, u.headers, requestId)
  t.equal(after.status, 'Failed')
  t.equal(after.error?.code, 'CANCELLED')
  t.equal(jobRow(app, requestId).fileName, null)

  await files.flush()
  t.notOk(files.seen.includes(`${requestId}.ndjson`), 'the worker never finished the cancelled file (no rename into place)')
  t.notOk(existsSync(join(filesDirOf(app), `${requestId}.ndjson`)), 'no file of the cancelled job')
  t.same(readdirSync(filesDirOf(app)).sort(), [`${nextId}.ndjson`], 'no temporary file left; only the next job\'s file')

  const again = await cancel(app, u.headers, requestId)
  t.equal(again.statusCode, 202, 'cancelling it again is harmless')
  t.equal(again.json().error.code, 'CANCELLED')
})

tap.test('cancelling a Pending export: it never runs', async (t) => {
  const app = await buildExportApp(t, { EXPORT_WORKERS: '1' })
  const other = await createUser(app, ['acme'], 'other')
  const u = await createUser(app, ['acme'], 'waiting')
  await seedObjects(app, 'acme', 'users', BIG)
  // The other user's job holds the only worker.
  const busy = await startExport(app, other.headers, 'acme', 'users')
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const before = (await readStatus(app, u.headers, requestId)).json() as JobStatusBody
  t.equal(before.status, 'Pending', 'queued behind the other user\'s job')
  t.equal((await readStatus(app, other.headers, busy)).json().status, 'InProgress')

  const res = await cancel(app, u.headers, requestId)
  t.equal(res.statusCode, 202, res.body)
  t.equal(res.json().status, 'Failed')
  t.equal(res.json().error.code, 'CANCELLED')

  const next = await postExport(app, u.headers, 'acme', 'groups')
  t.equal(next.statusCode, 200, `the slot is free at once: ${next.body}`)
  const nextId = next.json().requestId as string

  t.equal((await waitForJob(app, other.headers, busy)).status, 'Completed', 'the other user\'s job is unaffected')
  t.equal((await waitForJob(app, u.headers, nextId)).status, 'Completed', 'the next job ran after it')
  await until('the pool to go idle', () => app.services.scheduler.runningCount() === 0 ? true : undefined)
  const row = jobRow(app, requestId)
  t.same(row, { status: 'Failed', errorCode: 'CANCELLED', startedAt: null, attempts: 0, fileName: null }, 'the cancelled job was never started')
  const after = await waitForJob(app, u.headers, requestId)
  t.equal(after.error?.code, 'CANCELLED')
  t.equal(after.progress.processed, 0)
  t.notOk(readdirSync(filesDirOf(app)).some((name) => name.includes(requestId)), 'no file of it, temporary or final')
})

tap.test('deleting a completed request removes its file; its fileUrl answers 410', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  await seedObjects(app, 'acme', 'users', 10)
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  const done = await waitForJob(app, u.headers, requestId)
  t.equal(done.status, 'Completed')
  const fileUrl = done.result!.fileUrl
  const path = join(filesDirOf(app), `${requestId}.ndjson`)
  t.ok(existsSync(path), 'the file is on disk')
  t.equal((await downloadFile(app, fileUrl)).statusCode, 200, 'and downloads')

  const res = await cancel(app, u.headers, requestId)
  t.equal(res.statusCode, 202, res.body)
  t.equal(res.json().requestId, requestId)
  t.equal(res.json().status, 'Completed', 'a finished request keeps its status')
  t.notOk(existsSync(path), 'the file is removed from disk')

  const file = await downloadFile(app, fileUrl)
  t.equal(file.statusCode, 410, 'the old fileUrl')
  t.match(file.headers['content-type'], /^application\/problem\+json/)
  t.equal(file.json().code, 'FILE_EXPIRED')
  t.same(file.json().recreate, { method: 'POST', url: 'http://localhost:80/api/v1/idm/acme/users/export', body: { cursor: null } }, 'the 410 says how to export the page again')
  const after = (await readStatus(app, u.headers, requestId)).json()
  t.equal(after.result.fileUrl, null, 'the status hands out no dead link')
  t.equal(after.result.fileExpired, true)
  t.same(after.result.recreate, file.json().recreate, 'and says the same as the 410')
  t.equal(Date.parse(after.result.expiresAt) <= Date.now(), true, 'expiresAt is no longer in the future')

  const again = await cancel(app, u.headers, requestId)
  t.equal(again.statusCode, 202, 'deleting it again is harmless')
  t.equal((await postExport(app, u.headers, 'acme', 'users')).statusCode, 200, 'the user can export again')
})

tap.test("another user's request: 404, and it keeps running", async (t) => {
  // The job's end is held while the others try to cancel it.
  const gate = exportGate(t)
  const app = await buildExportApp(t, { EXPORT_WORKERS: '1' }, { exportTask: gate.wrap })
  const owner = await createUser(app, ['acme'], 'owner')
  const colleague = await createUser(app, ['acme'], 'colleague')
  const stranger = await createUser(app, ['globex'], 'stranger')
  await seedObjects(app, 'acme', 'users', 5_000)
  const requestId = await startExport(app, owner.headers, 'acme', 'users')
  await until('its page to be written', () => gate.held() > 0 || undefined)

  for (const [who, u] of [['a user of the same firm', colleague], ['a user of another firm', stranger]] as const) {
    const res = await cancel(app, u.headers, requestId)
    t.equal(res.statusCode, 404, who)
    t.match(res.headers['content-type'], /^application\/problem\+json/, who)
    t.equal(res.json().code, 'NOT_FOUND', who)
    t.notOk(res.body.includes('InProgress'), `${who}: nothing of the request leaks`)
  }
  t.equal(jobRow(app, requestId).status, 'InProgress', 'still running')
  gate.release()
  const done = await waitForJob(app, owner.headers, requestId)
  t.equal(done.status, 'Completed', 'it ran to the end')
  t.equal(done.result?.total, 5_000)
  t.ok(existsSync(join(filesDirOf(app), `${requestId}.ndjson`)), 'its file is there')
})

tap.test('unknown, malformed and unauthenticated cancels', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  const requestId = await startExport(app, u.headers, 'acme', 'users')
  await waitForJob(app, u.headers, requestId)

  const unknown = await cancel(app, u.headers, `export-${randomUUID()}`)
  t.equal(unknown.statusCode, 404)
  t.match(unknown.headers['content-type'], /^application\/problem\+json/)
  t.equal(unknown.json().code, 'NOT_FOUND')

  for (const id of ['abc', 'export-123', `request-${randomUUID()}`, `${requestId}x`, requestId.toUpperCase(), '..%2F..%2Fetc%2Fpasswd', `export-${'f'.repeat(500)}`]) {
    const res = await cancel(app, u.headers, id)
    const what = id.length > 60 ? `${id.slice(0, 40)}… (${id.length} chars)` : id
    t.equal(res.statusCode, 400, what)
    t.equal(res.json().code, 'VALIDATION_FAILED', what)
  }

  const anonymous = await app.inject({ method: 'DELETE', url: `/api/v1/request/${requestId}` })
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.json().code, 'UNAUTHENTICATED')
  t.ok(existsSync(join(filesDirOf(app), `${requestId}.ndjson`)), 'none of them touched the file')
  t.equal((await readStatus(app, u.headers, requestId)).json().status, 'Completed')
})
