import t from 'tap'
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import type { FastifyInstance } from 'fastify'
import { admin, createUser, exportGate, filesDirOf, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, postExport, seedObjects, waitForJob, type JobStatusBody } from './helpers/exports.js'

const FIRM = 'acme'
const TYPE = 'users'

function tmpFiles (filesDir: string): string[] {
  return readdirSync(filesDir).filter((n) => n.endsWith('.tmp'))
}

/** Starts an export (expecting 200) and waits for it to end. */
async function runExport (app: FastifyInstance, headers: Record<string, string>): Promise<JobStatusBody> {
  const res = await postExport(app, headers, FIRM, TYPE)
  if (res.statusCode !== 200) throw new Error(`startExport: ${res.statusCode} ${res.body}`)
  return waitForJob(app, headers, res.json().requestId, { timeoutMs: 30_000 })
}

const FAULTS: Array<{ name: string, errno: string, apply: (filesDir: string) => void }> = [
  { name: 'the files directory was removed', errno: 'ENOENT', apply: (dir) => rmSync(dir, { recursive: true, force: true }) },
  {
    name: 'the files directory was replaced by a regular file',
    errno: 'ENOTDIR',
    apply: (dir) => {
      rmSync(dir, { recursive: true, force: true })
      writeFileSync(dir, 'not a directory')
    },
  },
]

for (const fault of FAULTS) {
  t.test(`${fault.name}: the job fails with EXPORT_WRITE_FAILED, the slot is freed, the server keeps serving`, async (t) => {
    const app = await buildExportApp(t)
    const owner = await createUser(app, [FIRM], 'owner')
    const colleague = await createUser(app, [FIRM], 'colleague')
    const lines = ['{"id":"u1","n":1}', '{"id":"u2","n":2}', '{"id":"u3","n":3}']
    t.equal((await importLines(app, owner.headers, FIRM, TYPE, lines)).statusCode, 200)

    fault.apply(filesDirOf(app))
    const failed = await runExport(app, owner.headers)
    t.equal(failed.status, 'Failed', 'the job fails instead of hanging or crashing the server')
    t.equal(failed.error?.code, 'EXPORT_WRITE_FAILED')
    t.match(failed.error?.message, /could not write the export file/, `a message a person can act on: ${failed.error?.message}`)
    t.match(failed.error?.message, new RegExp(fault.errno), 'naming the system error')
    t.match(failed.error?.message, /DATA_DIR/, 'and where to look')
    t.notOk(failed.error?.message.includes(filesDirOf(app)), 'without the server\'s paths')
    t.notOk(failed.result, 'no result, no fileUrl')

    t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'healthz still answers 200')
    const read = await app.inject({ url: `/api/v1/idm/${FIRM}/${TYPE}/u2`, headers: colleague.headers })
    t.equal(read.statusCode, 200, 'other users are served')
    t.same(read.json(), { id: 'u2', n: 2 })

    // Once the disk is back, the same user can start again at once: the slot was freed.
    rmSync(filesDirOf(app), { recursive: true, force: true })
    mkdirSync(filesDirOf(app))
    const retry = await runExport(app, owner.headers)
    t.equal(retry.status, 'Completed', `the owner's next export runs (${JSON.stringify(retry.error)})`)
    t.equal(retry.result?.total, 3)
    const other = await runExport(app, colleague.headers)
    t.equal(other.status, 'Completed', 'and so does a colleague\'s')
    t.same(tmpFiles(filesDirOf(app)), [], 'no temporary file is left')
  })
}

t.test('a write that fails after the temporary file was written: Failed, temporary file removed, slot freed', async (t) => {
  // The first job's final name is taken (a directory) before its worker starts: it writes
  // the whole temporary file, then cannot rename it into place.
  let blocked = false
  const app = await buildExportApp(t, {}, {
    exportTask: (run) => async (task, opts) => {
      if (!blocked) {
        blocked = true
        mkdirSync(task.finalPath)
        writeFileSync(join(task.finalPath, 'occupied'), '')
      }
      return run(task, opts)
    },
  })
  const u = await createUser(app, [FIRM])
  const rows: Array<{ id: string, doc: Buffer }> = []
  for (let i = 0; i < 10_000; i++) {
    const id = `obj-${String(i).padStart(6, '0')}`
    rows.push({ id, doc: Buffer.from(JSON.stringify({ id, pad: 'x'.repeat(420) })) })
  }
  await app.store.objects.upsertObjects(FIRM, TYPE, rows, Date.now())

  const res = await postExport(app, u.headers, FIRM, TYPE)
  t.equal(res.statusCode, 200, 'the export starts')
  const requestId: string = res.json().requestId
  const failed = await waitForJob(app, u.headers, requestId)
  t.equal(failed.status, 'Failed')
  t.equal(failed.error?.code, 'EXPORT_WRITE_FAILED')
  t.match(failed.error?.message, /could not write the export file \(EISDIR\)/, `the whole file was written, the rename failed: ${failed.error?.message}`)
  t.same(tmpFiles(filesDirOf(app)), [], 'the temporary file (a whole export of 4.5 MB) is removed')

  const next = await runExport(app, u.headers)
  t.equal(next.status, 'Completed', 'the slot is free and the next export runs')
  t.equal(next.result?.total, rows.length)
})

const LOCKER = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.module)
const db = new Database(workerData.path)
db.exec('BEGIN IMMEDIATE')
parentPort.postMessage('locked')
// The hold is counted from the moment the caller is about to run its writes, not from the lock.
const go = new Int32Array(workerData.go)
Atomics.wait(go, 0, 0)
// Held for holdMs, or until the caller lets go (2) once its writes have been answered.
Atomics.wait(go, 0, 1, workerData.holdMs)
const releasedAt = Date.now()
db.exec('COMMIT')
db.close()
parentPort.postMessage(releasedAt)
`
const BETTER_SQLITE3 = createRequire(import.meta.url).resolve('better-sqlite3')

/**
 * Holds the database's write lock from another thread (its own connection), runs `fn` once
 * the lock is held and keeps it `holdMs` from then (however late this thread saw the lock),
 * or, with `releaseAfterFn`, until `fn` has returned. Returns what `fn` returned, when it
 * was called and returned, and when the lock holder began to let go.
 */
async function whileLocked<T> (dbPath: string, holdMs: number, fn: () => Promise<T>, opts: { releaseAfterFn?: boolean } = {}): Promise<{ value: T, startedAt: number, doneAt: number, releasedAt: number }> {
  const go = new SharedArrayBuffer(4)
  const worker = new Worker(LOCKER, { eval: true, workerData: { module: BETTER_SQLITE3, path: dbPath, holdMs, go } })
  const messages: unknown[] = []
  let wake = (): void => {}
  worker.on('message', (m) => { messages.push(m); wake() })
  const failed = new Promise<never>((_resolve, reject) => worker.once('error', reject))
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  const message = async (n: number): Promise<unknown> => {
    while (messages.length < n) await Promise.race([new Promise<void>((resolve) => { wake = resolve }), failed])
    return messages[n - 1]
  }
  await message(1)
  const startedAt = Date.now()
  Atomics.store(new Int32Array(go), 0, 1)
  Atomics.notify(new Int32Array(go), 0)
  try {
    const value = await fn()
    const doneAt = Date.now()
    if (opts.releaseAfterFn) {
      Atomics.store(new Int32Array(go), 0, 2)
      Atomics.notify(new Int32Array(go), 0)
    }
    return { value, startedAt, doneAt, releasedAt: await message(2) as number }
  } finally {
    await exited
  }
}

t.test('a database locked by another connection is waited for, not failed at once', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, [FIRM])
  t.equal((await app.inject({ method: 'PUT', url: `/api/v1/idm/${FIRM}/${TYPE}/old`, headers: u.headers, payload: { id: 'old', v: 1 } })).statusCode, 201)

  const HOLD_MS = 600
  const writes: Array<{ name: string, status: number, run: () => Promise<{ statusCode: number, body: string }> }> = [
    { name: 'PUT of a new object', status: 201, run: () => app.inject({ method: 'PUT', url: `/api/v1/idm/${FIRM}/${TYPE}/new`, headers: u.headers, payload: { id: 'new', v: 1 } }) },
    { name: 'PUT of an existing object', status: 200, run: () => app.inject({ method: 'PUT', url: `/api/v1/idm/${FIRM}/${TYPE}/old`, headers: u.headers, payload: { id: 'old', v: 2 } }) },
    { name: 'DELETE of an object', status: 204, run: () => app.inject({ method: 'DELETE', url: `/api/v1/idm/${FIRM}/${TYPE}/new`, headers: u.headers }) },
    { name: 'an NDJSON import', status: 200, run: () => importLines(app, u.headers, FIRM, TYPE, ['{"id":"i1"}', '{"id":"i2"}']) },
    { name: 'creating a user', status: 201, run: () => app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name: 'late', firms: [FIRM] } }) },
    { name: 'issuing a token', status: 201, run: () => app.inject({ method: 'POST', url: `/api/v1/admin/users/${u.userId}/tokens`, headers: admin }) },
    { name: 'starting an export', status: 200, run: () => postExport(app, u.headers, FIRM, TYPE) },
  ]
  for (const write of writes) {
    const { value: res, startedAt, doneAt, releasedAt } = await whileLocked(sqliteOf(app).name, HOLD_MS, write.run)
    t.ok(startedAt < releasedAt, `${write.name}: sent while another connection held the write lock`)
    t.equal(res.statusCode, write.status, `${write.name} succeeds once the lock is released${res.statusCode === write.status ? '' : ` (${res.body})`}`)
    t.ok(doneAt >= releasedAt, `${write.name} waited for the lock (${doneAt - startedAt} ms) instead of failing at once`)
  }

  t.same((await app.inject({ url: `/api/v1/idm/${FIRM}/${TYPE}/old`, headers: u.headers })).json(), { id: 'old', v: 2 }, 'the writes took effect')
  t.equal((await app.inject({ url: `/api/v1/idm/${FIRM}/${TYPE}/new`, headers: u.headers })).statusCode, 404)
  t.equal((await app.inject({ url: `/api/v1/idm/${FIRM}/${TYPE}/i2`, headers: u.headers })).statusCode, 200)
})

t.test('a database locked past busy_timeout: writes answer 503 and change nothing; a running export is recorded once the lock goes, without blocking the server meanwhile', async (t) => {
  // The export's end is held until the database is locked (6 s, past the 5 s
  // busy_timeout): then it cannot be recorded until the lock goes.
  const gate = exportGate(t)
  const app = await buildExportApp(t, {}, { exportTask: gate.wrap })
  const u = await createUser(app, [FIRM])
  await seedObjects(app, FIRM, TYPE, 10_000)

  const started = await postExport(app, u.headers, FIRM, TYPE)
  t.equal(started.statusCode, 200)
  const requestId = started.json().requestId as string
  let healthAnswers = 0
  let statusAtLock: unknown
  const { releasedAt, doneAt } = await whileLocked(sqliteOf(app).name, 6000, async () => {
    statusAtLock = sqliteOf(app).prepare('SELECT status FROM export_jobs WHERE id = ?').pluck().get(requestId)
    gate.release()
    for (let i = 0; i < 10; i++) {
      if ((await app.inject({ url: '/healthz' })).statusCode === 200) healthAnswers++
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })
  t.not(statusAtLock, 'Completed', `the job was still running when the lock was taken (${String(statusAtLock)})`)
  t.equal(healthAnswers, 10, 'the server kept answering while the job\'s end could not be recorded')
  t.ok(doneAt < releasedAt, 'all of them before the lock went')
  const done = await waitForJob(app, u.headers, requestId)
  t.equal(done.status, 'Completed', 'the end of the job is recorded once the lock is released')
  t.equal(done.result?.total, 10_000)
  t.ok(Date.now() >= releasedAt)

  // Held until the write has been answered, however long it took to be sent.
  const { value: res } = await whileLocked(sqliteOf(app).name, 120_000, () =>
    app.inject({ method: 'PUT', url: `/api/v1/idm/${FIRM}/${TYPE}/locked`, headers: u.headers, payload: { id: 'locked' } }), { releaseAfterFn: true })
  t.equal(res.statusCode, 503, 'a write still locked out after busy_timeout is a 503')
  t.equal(res.json().code, 'SERVICE_UNAVAILABLE')
  t.equal(res.headers['retry-after'], '1', 'with Retry-After')
  t.notMatch(res.body, /SQLITE|BEGIN|INSERT/, 'and no SQL in the body')
  t.equal((await app.inject({ url: `/api/v1/idm/${FIRM}/${TYPE}/locked`, headers: u.headers })).statusCode, 404, 'nothing was written')
})
