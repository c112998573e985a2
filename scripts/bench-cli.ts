/**
 * `npx tsx scripts/bench-cli.ts [--objects N] [--job-size N]`
 *
 * Times the `bulk-export` CLI (the built one, dist/cli/main.js, as a user runs it)
 * pulling a whole collection end to end from a server in this process: every page
 * started, long-polled, downloaded, verified and written to disk. Prints objects/s and
 * MB/s next to the server's own page-write time (the sum of its jobs' worker times), the
 * floor a pipelined client can approach. Build first: `npm run build`.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { SqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { adminClient } from './lib/api-client.js'
import { parseFlags } from './lib/args.js'
import { runBenchServer } from './lib/bench-server.js'
import { printWithChecks, type Check } from './lib/checks-table.js'
import { makeUser, objectBatches } from './lib/demo-data.js'
import { fmt, mb } from './lib/format.js'

const FIRM = 'bench'
const TYPE = 'users'
const CLI = 'dist/cli/main.js'

const { objects, 'job-size': jobSize } = parseFlags(
  'usage: npx tsx scripts/bench-cli.ts [--objects N (1000000)] [--job-size N (100000)]   (npm run build first)',
  { whole: { objects: { min: 1, default: 1_000_000 }, 'job-size': { min: 1, default: 100_000 } } }
)
if (!existsSync(CLI)) {
  console.error(`${CLI} is missing: run \`npm run build\` first`)
  process.exit(2)
}

const env = { EXPORT_JOB_SIZE: String(jobSize), RATE_LIMIT_POLLS_PER_MINUTE: '1000000', RATE_LIMIT_STARTS_PER_MINUTE: '1000000' }
await runBenchServer('bench-cli', env, async ({ app, base, adminToken, adopt }) => {
  const admin = adminClient(base, adminToken)
  await admin.putFirm(FIRM)
  const user = await admin.createUser('bench cli', [FIRM])
  const expected = createHash('sha256')
  let bytes = 0
  for (const rows of objectBatches(makeUser, 1, objects, 10_000)) {
    await app.store.objects.upsertObjects(FIRM, TYPE, rows, Date.now())
    await new Promise((resolve) => setImmediate(resolve))
  }
  // The collection as the pull must deliver it: in id order, one line each.
  const sqlite = (app.store as SqliteStore).connection.sqlite
  for (const doc of sqlite.prepare('SELECT doc FROM objects WHERE firm_id = ? AND type = ? ORDER BY id').pluck().iterate(FIRM, TYPE) as IterableIterator<Buffer>) {
    expected.update(doc).update('\n')
    bytes += doc.length + 1
  }
  console.log(`server ${base.origin}: ${fmt(objects)} users seeded (${fmt(mb(bytes), 1)} MB of NDJSON), pages of ${fmt(jobSize)}; node ${process.version}`)

  const out = mkdtempSync(join(tmpdir(), 'bench-cli-out-'))
  try {
    const t0 = performance.now()
    const child = spawn(process.execPath, [CLI, 'pull', '--url', base.origin, '--firm', FIRM, '--type', TYPE, '--out', out], {
      env: { PATH: process.env.PATH ?? '', BULK_EXPORT_TOKEN: user.token },
      stdio: ['ignore', 'inherit', 'pipe'],
    })
    adopt(child)
    let log = ''
    child.stderr.on('data', (d: Buffer) => { log += d })
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    const ms = performance.now() - t0
    if (code !== 0) throw new Error(`the CLI exited ${code}: ${log}`)

    const jobs = sqlite.prepare<[], { startedAt: number, finishedAt: number, createdAt: number }>(
      "SELECT started_at AS startedAt, finished_at AS finishedAt, created_at AS createdAt FROM export_jobs WHERE status = 'Completed'").all()
    const writeMs = jobs.reduce((sum, j) => sum + (j.finishedAt - j.startedAt), 0)
    const got = createHash('sha256')
    for (const file of readdirSync(out).filter((f) => f.endsWith('.ndjson')).sort()) got.update(readFileSync(join(out, file)))

    const report = [
      '', `### CLI pull: ${fmt(objects)} objects, pages of ${fmt(jobSize)}`, '',
      '| metric | value |', '|---|---:|',
      `| end to end (\`bulk-export pull\`, start to exit) | ${(ms / 1000).toFixed(2)} s |`,
      `| objects/s | **${fmt(objects / (ms / 1000))}** |`,
      `| MB/s of verified NDJSON on disk | ${fmt(mb(bytes) / (ms / 1000), 1)} |`,
      `| server page-write time (Σ job worker time, ${jobs.length} jobs) | ${(writeMs / 1000).toFixed(2)} s |`,
      `| end to end / Σ page writes | ${(ms / writeMs).toFixed(2)}× |`,
    ]
    const checks: Check[] = [
      ['the pulled files are exactly the collection (sha256)', got.digest('hex') === expected.digest('hex'), `${fmt(mb(bytes), 1)} MB`],
      ['one job per page, none exported twice', jobs.length === Math.ceil(objects / jobSize), `${jobs.length} jobs`],
    ]
    printWithChecks(report, checks)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})
