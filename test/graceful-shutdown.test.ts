import t, { type Test } from 'tap'
import Database from 'better-sqlite3'
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DB_FILE } from '../src/store/sqlite/connection.js'
import {
  api, countLines, createUserOver, readJobRow, seedDataDir, sha256, startServer, until, waitForExit,
  type ServerProcess,
} from './helpers/child-server.js'
import { httpGet, type JobStatusBody } from './helpers/exports.js'

const FIRM = 'acme'
const TYPE = 'identities'
const COUNT = 100_000
const JOB_SIZE = { EXPORT_JOB_SIZE: String(COUNT) }

function tempDir (t: { teardown: (fn: () => unknown) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'bes-stop-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

// One seeded database, copied into each test's DATA_DIR.
const template = tempDir(t)
const seeded = await seedDataDir(template, FIRM, TYPE, COUNT)

function seededDataDir (t: { teardown: (fn: () => unknown) => void }): string {
  const dir = tempDir(t)
  copyFileSync(join(template, DB_FILE), join(dir, DB_FILE))
  return dir
}

async function readStatus (server: ServerProcess, headers: Record<string, string>, requestId: string): Promise<JobStatusBody> {
  const res = await api(server.base, 'GET', `/api/v1/request/${requestId}`, { headers })
  if (res.status !== 200) throw new Error(`getRequest ${requestId}: ${res.status} ${res.body}`)
  return res.json()
}

async function waitForEnd (server: ServerProcess, headers: Record<string, string>, requestId: string): Promise<JobStatusBody> {
  return until(`job ${requestId} to finish`, async () => {
    const status = await readStatus(server, headers, requestId)
    return status.status === 'Completed' || status.status === 'Failed' ? status : undefined
  }, 45_000)
}

/**
 * Starts an export and reads its status as fast as the server answers until the worker
 * is writing (InProgress, some rows done, not all). `writing` is false when the job
 * finished before that could be seen (the caller tries again).
 */
async function exportUntilWriting (server: ServerProcess, headers: Record<string, string>): Promise<{ requestId: string, writing: boolean }> {
  const start = await api(server.base, 'POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { headers })
  if (start.status !== 200) throw new Error(`startExport: ${start.status} ${start.body}`)
  const requestId: string = start.json().requestId
  const deadline = Date.now() + 30_000
  for (;;) {
    const status = await readStatus(server, headers, requestId)
    if (status.status === 'InProgress' && status.progress.processed > 0 && status.progress.processed < seeded.count) return { requestId, writing: true }
    if (status.status === 'Completed' || status.status === 'Failed' || status.progress.processed >= seeded.count) {
      await waitForEnd(server, headers, requestId)
      return { requestId, writing: false }
    }
    if (Date.now() > deadline) throw new Error(`job ${requestId} never got going: ${JSON.stringify(status)}`)
  }
}

/** Checks that a stop was clean: exit code 0, nothing logged at error level or above, nothing on stderr. */
async function assertCleanExit (t: Test, server: ServerProcess): Promise<void> {
  const exit = await waitForExit(server)
  t.same(exit, { code: 0, signal: null }, `the process exits 0 (stderr: ${server.stderr()})`)
  const logs = server.logs()
  t.same(logs.filter((e) => e.level >= 50), [], 'no log line at error level or above')
  t.ok(logs.some((e) => e.msg === 'stopped'), 'it logs that it stopped')
  t.equal(server.stderr(), '', 'nothing on stderr')
}

t.test('SIGTERM with SHUTDOWN_GRACE_SECONDS=0: the running export is requeued, uncounted, and completes after the restart', async (t) => {
  const dataDir = seededDataDir(t)
  const filesDir = join(dataDir, 'exports')
  let server = await startServer(t, dataDir, { ...JOB_SIZE, SHUTDOWN_GRACE_SECONDS: '0' })
  const user = await createUserOver(server.base, FIRM)

  let requestId: string | undefined
  for (let round = 1; round <= 5 && requestId === undefined; round++) {
    const job = await exportUntilWriting(server, user.headers)
    if (!job.writing) {
      t.comment(`round ${round}: the job finished before it could be interrupted; trying again`)
      continue
    }
    server.child.kill('SIGTERM')
    await assertCleanExit(t, server)
    const row = readJobRow(dataDir, job.requestId)
    if (row?.status !== 'Pending') {
      t.comment(`round ${round}: the job was ${row?.status} when the stop reached it; trying again`)
      server = await startServer(t, dataDir, { ...JOB_SIZE, SHUTDOWN_GRACE_SECONDS: '0' })
      continue
    }
    requestId = job.requestId
    t.equal(row.attempts, 0, 'the interrupted attempt is not counted against the job')
    t.equal(row.fileName, null, 'no file is recorded')
    t.same(readdirSync(filesDir), [], 'neither a temporary nor a partial file is left behind')
  }
  if (requestId === undefined) throw new Error('could not stop the server while the export ran')

  server = await startServer(t, dataDir, JOB_SIZE)
  const done = await waitForEnd(server, user.headers, requestId)
  t.equal(done.status, 'Completed', `the requeued job completes after the restart (${JSON.stringify(done.error)})`)
  t.equal(done.result?.total, seeded.count)
  t.equal(done.result?.sha256, seeded.sha256, 'over the whole collection')
  t.equal(readJobRow(dataDir, requestId)?.attempts, 1, 'on what counts as its first attempt')
  const file = await httpGet(done.result!.fileUrl)
  t.equal(file.status, 200)
  t.equal(countLines(file.body), seeded.count, 'the served file is whole')
  t.equal(sha256(file.body), done.result?.sha256, 'and hashes to result.sha256')
  t.same(readdirSync(filesDir), [`${requestId}.ndjson`], 'no temporary file')

  server.child.kill('SIGTERM')
  await assertCleanExit(t, server)
})

/** An import request whose body is still being sent: the rest goes when `finish` is called. */
function slowImport (base: string, headers: Record<string, string>, requestId: string, first: string[]) {
  const req = httpRequest(`${base}/api/v1/idm/${FIRM}/later/import`, {
    method: 'POST',
    // Keep-alive, as real clients use: the stop must not wait on this connection afterwards.
    agent: new HttpAgent({ keepAlive: true }),
    headers: { ...headers, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked', 'x-request-id': requestId },
  })
  const response = new Promise<{ status: number, body: string, connection: string | undefined }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  req.write(first.map((l) => l + '\n').join(''))
  return {
    response,
    finish (rest: string[]) {
      req.end(rest.map((l) => l + '\n').join(''))
      return response
    },
  }
}

t.test('SIGTERM with a grace period: no new connections, the in-flight request is answered, the running export completes before the exit', async (t) => {
  const dataDir = seededDataDir(t)
  const filesDir = join(dataDir, 'exports')
  const env = { ...JOB_SIZE, SHUTDOWN_GRACE_SECONDS: '60' }
  let server = await startServer(t, dataDir, env)
  const user = await createUserOver(server.base, FIRM)

  for (let round = 1; ; round++) {
    if (round > 5) throw new Error('could not stop the server while the export ran')
    // A request the server is in the middle of when the signal arrives.
    const importId = `slow-import-${round}`
    const upload = slowImport(server.base, user.headers, importId, ['{"id":"late-1"}', '{"id":"late-2"}'])
    await until('the server to take the import request', () => server.logs().some((e) => e.reqId === importId) ? true : undefined)

    const job = await exportUntilWriting(server, user.headers)
    if (!job.writing) {
      t.comment(`round ${round}: the job finished before the signal could be sent; trying again`)
      await upload.finish([])
      continue
    }
    server.child.kill('SIGTERM')

    // The listening socket closes at once: a new connection is refused…
    await until('new connections to be refused', async () => {
      try {
        await httpGet(`${server.base}/healthz`)
        return undefined
      } catch (err) {
        return (err as NodeJS.ErrnoException).code
      }
    }, 10_000, 10).then((code) => t.match(code, /^(ECONNREFUSED|ECONNRESET)$/, `a new connection is refused once the stop began (${code})`))
    t.equal(server.child.exitCode, null, 'while the process is still finishing its work')

    // …while the request already in flight is read to its end and answered.
    const answer = await upload.finish(['{"id":"late-3"}'])
    // The running jobs' grace starts once the in-flight requests are done.
    const answeredAt = Date.now()
    t.equal(answer.status, 200, `the in-flight import is answered (${answer.body})`)
    t.same(JSON.parse(answer.body), { imported: 3 })
    t.equal(answer.connection, 'close', 'and its keep-alive connection is closed, so it cannot hold the stop open')

    await assertCleanExit(t, server)
    const row = readJobRow(dataDir, job.requestId)
    t.equal(row?.status, 'Completed', `the running export finished within the grace period (${row?.errorCode})`)
    if ((row?.finishedAt ?? 0) < answeredAt) {
      t.comment(`round ${round}: the job had finished before the grace period began; trying again`)
      server = await startServer(t, dataDir, env)
      continue
    }
    t.ok((row?.finishedAt ?? 0) >= answeredAt, 'it finished during the grace period, before the exit')
    t.equal(row?.attempts, 1)
    t.same(readdirSync(filesDir).filter((n) => n.endsWith('.tmp')), [], 'no temporary file')
    const onDisk = readFileSync(join(filesDir, `${job.requestId}.ndjson`))
    t.equal(countLines(onDisk), seeded.count, 'its file is whole')
    t.equal(sha256(onDisk), seeded.sha256)
    t.equal(row?.sha256, seeded.sha256, 'and recorded with its hash')

    const db = new Database(join(dataDir, DB_FILE), { readonly: true })
    t.teardown(() => db.close())
    const imported = db.prepare("SELECT id FROM objects WHERE firm_id = ? AND type = 'later' ORDER BY id").pluck().all(FIRM)
    t.same(imported, ['late-1', 'late-2', 'late-3'], 'the in-flight import was committed before the store closed')
    break
  }
})
