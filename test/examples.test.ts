import tap from 'tap'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createUserOver, seedDataDir, startServer } from './helpers/child-server.js'
import { ensureDebianPackage } from './helpers/debian.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

async function run (command: string, args: string[], cwd: string, env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(command, args, { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d })
  child.stderr.on('data', (d: Buffer) => { stderr += d })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, stdout, stderr }
}

tap.test('the examples run against a real server: the TypeScript client and the curl + jq script', async (t) => {
  ensureDebianPackage('/usr/bin/jq', 'jq', 'examples/export.sh needs jq')
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-examples-'))
  const work = mkdtempSync(join(tmpdir(), 'bes-examples-out-'))
  t.teardown(() => {
    rmSync(dataDir, { recursive: true, force: true })
    rmSync(work, { recursive: true, force: true })
  })
  const seeded = await seedDataDir(dataDir, 'acme', 'users', 2500, 200)
  const server = await startServer(t, dataDir, { EXPORT_JOB_SIZE: '1000' })
  const token = (await createUserOver(server.base, 'acme')).headers.authorization.slice('Bearer '.length)

  const ts = await run(process.execPath, ['--import', 'tsx', 'examples/nightly-sync.ts', 'acme', 'users'], ROOT, { BULK_EXPORT_URL: server.base, BULK_EXPORT_TOKEN: token })
  t.equal(ts.code, 0, ts.stderr)
  t.match(ts.stdout, /^2500 users of acme, each exactly once and verified$/m)

  const sh = await run('bash', [join(ROOT, 'examples/export.sh'), 'acme', 'users'], work, { BASE: server.base, TOKEN: token })
  t.equal(sh.code, 0, sh.stderr)
  const files = readdirSync(work).filter((f) => f.endsWith('.ndjson')).sort()
  t.same(files, ['page-1.ndjson', 'page-2.ndjson', 'page-3.ndjson'])
  const all = createHash('sha256')
  for (const f of files) all.update(readFileSync(join(work, f)))
  t.equal(all.digest('hex'), seeded.sha256, 'the pages are exactly the collection')
})
