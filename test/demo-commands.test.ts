import tap, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { EXPORT_ALL } from '../scripts/lib/demo-commands.js'
import { createUser, filesDirOf, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp } from './helpers/exports.js'

/** Runs the demo's export_all in bash against a server, in a fresh directory. */
async function runExportAll (t: { teardown: (fn: () => unknown) => void }, base: string, token: string): Promise<{ code: number | null, out: string, dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'bes-demo-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const child = spawn('bash', ['-c', `${EXPORT_ALL}\nexport_all acme users`], { cwd: dir, env: { ...process.env, TOKEN: token, BASE: base } })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d })
  child.stderr.on('data', (d: Buffer) => { out += d })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, out, dir }
}

async function setup (t: Test) {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '4' })
  const u = await createUser(app, ['acme'])
  const lines = Array.from({ length: 10 }, (_, i) => JSON.stringify({ id: `u-${i}` }))
  t.equal((await importLines(app, u.headers, 'acme', 'users', lines)).statusCode, 200)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, u, base, lines }
}

tap.test("the demo's printed commands export every page, verified, following cursors", async (t) => {
  const { u, base, lines } = await setup(t)
  const { code, out, dir } = await runExportAll(t, base, u.token)
  t.equal(code, 0, out)
  t.same(readdirSync(dir).filter((f) => f.endsWith('.ndjson')).sort(), ['page-1.ndjson', 'page-2.ndjson', 'page-3.ndjson'])
  const all = [1, 2, 3].map((n) => readFileSync(join(dir, `page-${n}.ndjson`), 'utf8')).join('')
  t.equal(all, lines.map((l) => l + '\n').join(''), 'every object once, in order')
  t.match(out, /page-3\.ndjson: 2 objects, sha256 verified, about 0 to go/)
})

tap.test("the demo's printed commands stop on Failed, with the job's message", async (t) => {
  const { app, u, base } = await setup(t)
  // The files directory is replaced by a file: the worker cannot write.
  rmSync(filesDirOf(app), { recursive: true, force: true })
  const { writeFileSync } = await import('node:fs')
  writeFileSync(filesDirOf(app), '')
  const { code, out } = await runExportAll(t, base, u.token)
  t.equal(code, 1, out)
  t.match(out, /failed: could not write the export file .* \(retryable: true\)/)
})

tap.test("the demo's printed commands refuse a file that does not match its sha256", async (t) => {
  const { app, u, base } = await setup(t)
  // The status reports another hash than the file's, as a damaged download would look.
  sqliteOf(app).exec(`CREATE TRIGGER damage AFTER UPDATE OF status ON export_jobs WHEN new.status = 'Completed'
    BEGIN UPDATE export_jobs SET sha256 = '${'0'.repeat(64)}' WHERE id = new.id; END`)
  const { code, out } = await runExportAll(t, base, u.token)
  t.equal(code, 1, out)
  t.match(out, /page-1\.ndjson does not match its sha256/)
})
