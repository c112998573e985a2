import t, { type Test } from 'tap'
import { createHash, randomUUID } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, watch, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { ADMIN_TOKEN, createUser, filesDirOf, importLines } from './helpers/build.js'
import { buildExportApp, downloadFile, exportPage, NO_RATE_LIMITS, readStatus, startExport, waitForJob, type JobStatusBody } from './helpers/exports.js'

const FIRM = 'acme'
const TYPE = 'users'

/** Export files (finished or temporary) in a files directory. */
function exportFiles (filesDir: string): string[] {
  return readdirSync(filesDir).filter((n) => n.endsWith('.ndjson') || n.endsWith('.tmp'))
}

async function until<T> (what: string, fn: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = fn()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * A job whose file expired: its status reads Completed with no link but how to export the
 * page again, and the link it handed out earlier answers 410 saying the same.
 */
async function expectExpired (t: Test, app: Parameters<typeof readStatus>[0], headers: Record<string, string>, requestId: string, oldFileUrl: string | null): Promise<JobStatusBody> {
  const res = await readStatus(app, headers, requestId)
  t.equal(res.statusCode, 200)
  const status = res.json() as JobStatusBody
  t.equal(status.status, 'Completed', 'the status still reads Completed')
  t.ok(status.result, 'with its result')
  t.ok(Date.parse(status.result!.expiresAt) <= Date.now(), `result.expiresAt is in the past (${status.result!.expiresAt})`)
  t.equal(status.result!.fileUrl, null, 'no link to a file that is gone')
  t.equal(status.result!.fileExpired, true)
  t.same(status.result!.recreate, { method: 'POST', url: `http://localhost:80/api/v1/idm/${FIRM}/${TYPE}/export`, body: { cursor: status.cursor } },
    'but the request that exports the page again (its own cursor)')
  const file = await downloadFile(app, oldFileUrl)
  t.equal(file.statusCode, 410, 'the link handed out earlier answers 410')
  t.match(file.headers['content-type'], /^application\/problem\+json/)
  t.equal(file.json().code, 'FILE_EXPIRED')
  t.same(file.json().recreate, status.result!.recreate, 'saying the same')
  t.match(file.json().detail, /export the page again/)
  return status
}

t.test('the sweeper timer deletes expired files; the status stays Completed, the link answers 410, the cursor re-creates the page', async (t) => {
  const app = await buildExportApp(t, { FILE_TTL_SECONDS: '1', EXPORT_JOB_SIZE: '3' })
  const u = await createUser(app, [FIRM])
  // Files come and go within a second: watch the directory rather than race the sweeper.
  const appeared = new Set<string>()
  const watcher = watch(filesDirOf(app), (_event, name) => { if (name) appeared.add(String(name)) })
  t.teardown(() => watcher.close())
  const lines = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7'].map((id) => JSON.stringify({ id, name: `name of ${id}` }))
  t.equal((await importLines(app, u.headers, FIRM, TYPE, lines)).statusCode, 200)
  const page2Sha = createHash('sha256').update(lines.slice(3, 6).map((l) => l + '\n').join('')).digest('hex')

  const run = async (cursor?: string | null): Promise<{ requestId: string, result: NonNullable<JobStatusBody['result']> }> => {
    const requestId = await startExport(app, u.headers, FIRM, TYPE, cursor)
    const status = await waitForJob(app, u.headers, requestId)
    if (status.status !== 'Completed' || !status.result) throw new Error(`job ${requestId} ${status.status}: ${JSON.stringify(status.error)}`)
    return { requestId, result: status.result }
  }
  const page1 = await run()
  const cursor = page1.result.nextCursor
  t.type(cursor, 'string', 'page 1 has a next cursor')
  const page2 = await run(cursor)
  t.equal(page2.result.total, 3)
  t.equal(page2.result.sha256, page2Sha, 'page 2 holds a4..a6')

  await until('both files to be written', () => appeared.has(`${page1.requestId}.ndjson`) && appeared.has(`${page2.requestId}.ndjson`) ? true : undefined)
  // Nothing else removes files while the app runs: only the timer can.
  const left = await until('the sweeper to remove the expired files', () => exportFiles(filesDirOf(app)).length === 0 ? [] : undefined)
  t.same(left, [], 'the files directory holds no export file once both have expired')

  await expectExpired(t, app, u.headers, page1.requestId, page1.result.fileUrl)
  const expired = await expectExpired(t, app, u.headers, page2.requestId, page2.result.fileUrl)
  t.equal(expired.cursor, cursor, 'page 2 says which page it was')
  t.equal(expired.result!.total, 3, 'the result still tells what the file held')
  t.equal(expired.result!.sha256, page2Sha)

  const again = await run(cursor)
  t.not(again.requestId, page2.requestId, 'a new request')
  t.equal(again.result.total, 3)
  t.equal(again.result.sha256, page2Sha, 're-using page 2\'s input cursor re-creates the same lines, byte for byte')
  t.type(again.result.nextCursor, 'string', 'with a next cursor as before')
})

t.test('at start-up, export files no completed job owns and files that expired while the server was down are removed', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-retention-'))
  const apps: Array<{ close: () => Promise<unknown> }> = []
  t.teardown(async () => {
    for (const app of apps) await app.close()
    rmSync(dataDir, { recursive: true, force: true })
  })
  const start = async () => {
    const app = await buildApp(loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN, LOG_LEVEL: 'silent', ...NO_RATE_LIMITS }))
    apps.push(app)
    await app.ready()
    return app
  }

  const first = await start()
  const u = await createUser(first, [FIRM])
  t.equal((await importLines(first, u.headers, FIRM, TYPE, ['{"id":"b1"}', '{"id":"b2"}'])).statusCode, 200)
  const kept = await exportPage(first, u.headers, FIRM, TYPE)
  const lapsed = await exportPage(first, u.headers, FIRM, TYPE)
  await first.close()
  const filesDir = join(dataDir, 'exports')
  t.same(exportFiles(filesDir).sort(), [`${kept.requestId}.ndjson`, `${lapsed.requestId}.ndjson`].sort(), 'both files are on disk after the stop')

  // While the server is down: one file's time runs out, and files no job owns appear
  // (an export written but never recorded, a temporary file from a crash).
  const store = openSqliteStore(dataDir)
  store.connection.sqlite.prepare('UPDATE export_jobs SET expires_at = ? WHERE id = ?').run(Date.now() - 1000, lapsed.requestId)
  await store.close()
  const orphan = `export-${randomUUID()}.ndjson`
  const tmp = `.export-${randomUUID()}.1.tmp`
  writeFileSync(join(filesDir, orphan), '{"id":"b1"}\n{"id":"b2"}\n')
  writeFileSync(join(filesDir, tmp), '{"id":"b1"}\n{"id"')
  writeFileSync(join(filesDir, 'notes.txt'), 'not an export file')

  const second = await start()
  t.same(exportFiles(filesDir), [`${kept.requestId}.ndjson`], 'only the file of the live completed job is left')
  t.ok(statSync(join(filesDir, 'notes.txt')).isFile(), 'files that are not export files are left alone')

  await expectExpired(t, second, u.headers, lapsed.requestId, lapsed.result.fileUrl)
  const status = (await readStatus(second, u.headers, kept.requestId)).json() as JobStatusBody
  t.equal(status.status, 'Completed')
  const file = await downloadFile(second, status.result!.fileUrl)
  t.equal(file.statusCode, 200, 'the live file is still served')
  t.same(file.rawPayload, kept.file, 'unchanged')
  t.same(readFileSync(join(filesDir, `${kept.requestId}.ndjson`)), kept.file)
})
