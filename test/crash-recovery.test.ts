import t from 'tap'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createAdminService } from '../src/services/admin.js'
import { MAX_ATTEMPTS } from '../src/services/export-scheduler.js'
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js'
import {
  api, countLines, createUserOver, readJobRow, seedDataDir, sha256, startServer, until, waitForExit,
  type ServerProcess,
} from './helpers/child-server.js'
import { httpGet, type JobStatusBody } from './helpers/exports.js'

const FIRM = 'acme'
const TYPE = 'identities'

function tempDataDir (t: { teardown: (fn: () => unknown) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'bes-crash-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function readStatus (server: ServerProcess, headers: Record<string, string>, requestId: string): Promise<JobStatusBody> {
  const res = await api(server.base, 'GET', `/api/v1/request/${requestId}`, { headers })
  if (res.status !== 200) throw new Error(`getRequest ${requestId}: ${res.status} ${res.body}`)
  return res.json()
}

/** Polls over the socket until the job is Completed or Failed; returns every status seen on the way. */
async function waitForEnd (server: ServerProcess, headers: Record<string, string>, requestId: string): Promise<{ last: JobStatusBody, seen: string[] }> {
  const seen: string[] = []
  const last = await until(`job ${requestId} to finish`, async () => {
    const status = await readStatus(server, headers, requestId)
    seen.push(status.status)
    return status.status === 'Completed' || status.status === 'Failed' ? status : undefined
  }, 45_000)
  return { last, seen }
}

t.test('SIGKILL in the middle of a 100,000-object export: the job resumes at the next start and completes', async (t) => {
  const dataDir = tempDataDir(t)
  const filesDir = join(dataDir, 'exports')
  const seeded = await seedDataDir(dataDir, FIRM, TYPE, 100_000)

  let server = await startServer(t, dataDir)
  const user = await createUserOver(server.base, FIRM)

  // Kill the server while the worker is writing the file. Should the job finish between
  // the last status read and the kill, try again with a new job.
  let requestId: string | undefined
  for (let round = 1; round <= 5 && requestId === undefined; round++) {
    const start = await api(server.base, 'POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { headers: user.headers })
    t.equal(start.status, 200, `round ${round}: the export starts`)
    const id: string = start.json().requestId
    const deadline = Date.now() + 30_000
    let killed = false
    for (;;) {
      // No pause between reads: the whole export takes about a second.
      const status = await readStatus(server, user.headers, id)
      if (status.status === 'InProgress' && status.progress.processed > 0 && status.progress.processed < seeded.count) {
        server.child.kill('SIGKILL')
        killed = true
        break
      }
      if (status.status === 'Completed' || status.status === 'Failed' || status.progress.processed >= seeded.count) break
      if (Date.now() > deadline) throw new Error(`job ${id} never got going: ${JSON.stringify(status)}`)
    }
    if (!killed) {
      t.comment(`round ${round}: the job finished before it could be killed; trying again`)
      await waitForEnd(server, user.headers, id)
      continue
    }
    const exit = await waitForExit(server)
    t.same(exit, { code: null, signal: 'SIGKILL' }, 'the server died of SIGKILL')
    const row = readJobRow(dataDir, id)
    if (row?.status === 'InProgress') {
      requestId = id
      t.equal(row.status, 'InProgress', 'at kill time the job was InProgress, not Completed')
      t.equal(row.attempts, 1, 'on its first attempt')
    } else {
      t.comment(`round ${round}: the job was ${row?.status} by the time the kill landed; trying again`)
      server = await startServer(t, dataDir)
    }
  }
  if (requestId === undefined) throw new Error('could not kill the server while the export ran')
  t.comment(`after the kill: ${readdirSync(filesDir).join(', ') || '(no files)'}`)

  // Leftovers a crash can leave: a temporary file and a file no completed job owns.
  const strayTmp = `.export-${randomUUID()}.1.tmp`
  const orphan = `export-${randomUUID()}.ndjson`
  writeFileSync(join(filesDir, strayTmp), '{"id":"partial"}\n{"id":"cut-o')
  writeFileSync(join(filesDir, orphan), '{"id":"partial"}\n')

  server = await startServer(t, dataDir)
  const { last, seen } = await waitForEnd(server, user.headers, requestId)
  t.equal(last.status, 'Completed', `the interrupted job completes after the restart (${JSON.stringify(last.error)})`)
  t.same([...new Set(seen)].filter((s) => s !== 'Pending' && s !== 'InProgress' && s !== 'Completed'), [], 'only Pending, InProgress and Completed on the way')
  const result = last.result!
  t.equal(result.total, seeded.count)
  t.equal(result.nextCursor, null, 'the whole collection fits in the job')
  t.equal(result.sha256, seeded.sha256, 'the recorded hash is the hash of the whole collection')

  const file = await httpGet(result.fileUrl)
  t.equal(file.status, 200)
  t.equal(countLines(file.body), seeded.count, 'the downloaded file has every line')
  t.equal(file.body.length, seeded.bytes)
  t.equal(sha256(file.body), result.sha256, 'and hashes to result.sha256')
  t.ok(file.body.subarray(0, 40).toString().startsWith(`{"id":"${seeded.firstId}"`), 'starting with the first object')

  const names = readdirSync(filesDir)
  t.same(names.filter((n) => n.endsWith('.tmp')), [], 'no temporary file is left (the crash\'s and the planted one are gone)')
  t.same(names, [`${requestId}.ndjson`], 'only the completed job\'s file remains; the orphan is removed')
  t.equal(readJobRow(dataDir, requestId)?.attempts, 2, 'the crash counted as one attempt')

  const again = await api(server.base, 'POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { headers: user.headers })
  t.equal(again.status, 200, `the user can start a new job (${again.body})`)
  t.not(again.json().requestId, requestId)
})

t.test(`a job interrupted ${MAX_ATTEMPTS} times fails with EXPORT_FAILED at the next start; one below the bound is retried`, async (t) => {
  const dataDir = tempDataDir(t)
  const filesDir = join(dataDir, 'exports')
  const seeded = await seedDataDir(dataDir, FIRM, TYPE, 10, 100)

  // The state a server leaves when it dies again and again during the same job.
  const store = openSqliteStore(dataDir)
  const admin = createAdminService(store)
  await admin.putFirm(FIRM, undefined)
  const unlucky = await admin.createUser('unlucky', [FIRM])
  const other = await admin.createUser('other', [FIRM])
  const interrupted = async (userId: string, attempts: number): Promise<string> => {
    const id = `export-${randomUUID()}`
    await store.exports.insertJob({ id, userId, firmId: FIRM, objectType: TYPE, cursorIn: null, afterId: null, createdAt: Date.now() - 60_000 })
    store.connection.sqlite.prepare("UPDATE export_jobs SET status = 'InProgress', attempts = ?, started_at = ? WHERE id = ?").run(attempts, Date.now() - 1000, id)
    return id
  }
  const exhausted = await interrupted(unlucky.userId, MAX_ATTEMPTS)
  const retried = await interrupted(other.userId, MAX_ATTEMPTS - 1)
  await store.close()
  mkdirSync(filesDir, { recursive: true })
  writeFileSync(join(filesDir, `.${exhausted}.${MAX_ATTEMPTS}.tmp`), '{"id":"obj-')

  const server = await startServer(t, dataDir)
  const unluckyHeaders = { authorization: `Bearer ${unlucky.token}` }
  const otherHeaders = { authorization: `Bearer ${other.token}` }

  const failed = await readStatus(server, unluckyHeaders, exhausted)
  t.equal(failed.status, 'Failed', 'the job interrupted on every attempt is Failed, not stuck')
  t.equal(failed.error?.code, 'EXPORT_FAILED')
  t.match(failed.error?.message, /\S{3,}.*\S{3,}/, `with a message: ${failed.error?.message}`)
  t.notOk(failed.result, 'and no result')
  t.equal(readJobRow(dataDir, exhausted)?.attempts, MAX_ATTEMPTS, 'it was not started again')

  const next = await api(server.base, 'POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { headers: unluckyHeaders })
  t.equal(next.status, 200, `the user's slot is free (${next.body})`)
  const fresh = await waitForEnd(server, unluckyHeaders, next.json().requestId)
  t.equal(fresh.last.status, 'Completed', 'and the new job runs')
  t.equal(fresh.last.result?.sha256, seeded.sha256)

  const resumed = await waitForEnd(server, otherHeaders, retried)
  t.equal(resumed.last.status, 'Completed', `a job one attempt short of the bound is retried and completes (${JSON.stringify(resumed.last.error)})`)
  t.equal(resumed.last.result?.total, seeded.count)
  t.equal(readJobRow(dataDir, retried)?.attempts, MAX_ATTEMPTS, 'its last attempt')
  t.same(readdirSync(filesDir).filter((n) => n.endsWith('.tmp')), [], 'no temporary file is left')
})
