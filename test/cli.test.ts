import tap, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { api, createUserOver, seedDataDir, startServer } from './helpers/child-server.js'
import { startFaultProxy, type Seen } from './helpers/fault-proxy.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIRM = 'acme'
const TYPE = 'users'

interface Run { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** Starts `bulk-export …` as a user runs it (the token in the environment); `kill` stops it. */
function cli (args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d })
  child.stderr.on('data', (d: Buffer) => { stderr += d })
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  return { child, done }
}

async function setup (t: Test, count = 3000, jobSize = 500) {
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-cli-'))
  const out = mkdtempSync(join(tmpdir(), 'bes-cli-out-'))
  t.teardown(() => {
    rmSync(dataDir, { recursive: true, force: true })
    rmSync(out, { recursive: true, force: true })
  })
  const seeded = await seedDataDir(dataDir, FIRM, TYPE, count, 200)
  const server = await startServer(t, dataDir, { EXPORT_JOB_SIZE: String(jobSize) })
  const user = await createUserOver(server.base, FIRM)
  return { server, seeded, out, headers: user.headers, token: user.headers.authorization.slice('Bearer '.length) }
}

const sha256 = (buf: Buffer): string => createHash('sha256').update(buf).digest('hex')
const pageFiles = (dir: string): string[] => readdirSync(dir).filter((f) => /^page-\d{5}\.ndjson$/.test(f)).sort()
const joined = (dir: string): Buffer => Buffer.concat(pageFiles(dir).map((f) => readFileSync(join(dir, f))))
const isDownload = (s: Seen): boolean => s.method === 'GET' && s.url.startsWith('/api/v1/files/')

tap.test('bulk-export pull writes every page, verified; --merge one file; a second run has nothing to do', async (t) => {
  const { server, seeded, out, token } = await setup(t)
  const env = { BULK_EXPORT_URL: server.base, BULK_EXPORT_TOKEN: token }
  const first = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', out], env).done
  t.equal(first.code, 0, first.stderr)
  t.equal(pageFiles(out).length, 6, 'six pages of 500')
  t.equal(sha256(joined(out)), seeded.sha256, 'together, exactly the collection')
  t.match(first.stderr, /pulled 3000 objects of acme\/users/)
  t.match(first.stderr, /page 6: 500 objects, sha256 verified/, 'plain log lines when not on a terminal')
  const again = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', out], env).done
  t.equal(again.code, 0)
  t.match(again.stderr, /is complete \(3000 objects in 6 pages\)/)

  const merged = join(out, 'merged')
  const m = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', merged, '--merge'], env).done
  t.equal(m.code, 0, m.stderr)
  t.equal(sha256(readFileSync(join(merged, `${TYPE}.ndjson`))), seeded.sha256, '--merge: one file, exactly the collection')
  t.same(readdirSync(merged).sort(), ['.bulk-export-state.json', `${TYPE}.ndjson`], 'and nothing else left behind')
})

tap.test('kill -9 in the middle of a pull, run it again: it finishes without fetching a finished page twice', async (t) => {
  const { server, seeded, out, token, headers } = await setup(t, 6000, 500)
  // Downloads are slowed, so the kill lands in the middle of the pull.
  const proxy = await startFaultProxy(t, server.base, (req) => req.url?.startsWith('/api/v1/files/') ? { delayMs: 250 } : undefined)
  const env = { BULK_EXPORT_URL: proxy.base, BULK_EXPORT_TOKEN: token }
  for (const merge of [false, true]) {
    const dir = join(out, merge ? 'merged' : 'pages')
    const args = ['pull', '--firm', FIRM, '--type', TYPE, '--out', dir, ...(merge ? ['--merge'] : [])]
    const run = cli(args, env)
    const deadline = Date.now() + 30_000
    const stateFile = join(dir, '.bulk-export-state.json')
    const finished = (): number => existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')).pages.length : 0
    while (finished() < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    run.child.kill('SIGKILL')
    const killed = await run.done
    t.equal(killed.signal, 'SIGKILL', `${merge ? '--merge' : 'pages'}: killed`)
    const before = JSON.parse(readFileSync(stateFile, 'utf8'))
    t.ok(before.pages.length >= 3 && before.pages.length < 12, `killed after ${before.pages.length} of 12 pages`)
    const seenBefore = proxy.seen.length

    const resumed = await cli(args, env).done
    t.equal(resumed.code, 0, resumed.stderr)
    const result = merge ? readFileSync(join(dir, `${TYPE}.ndjson`)) : joined(dir)
    t.equal(sha256(result), seeded.sha256, 'the resumed pull is exactly the collection')
    const fetchedAgain = proxy.seen.slice(seenBefore).filter(isDownload)
      .filter((s) => before.pages.some((p: { requestId: string }) => s.url.includes(p.requestId)))
    t.same(fetchedAgain, [], 'no finished page was downloaded again')
  }
  const jobs = (await api(server.base, 'GET', '/api/v1/requests?limit=100', { headers })).json().requests
  t.ok(jobs.length <= 2 * 12 + 2, `the restarts found their jobs again rather than exporting everything twice (${jobs.length} jobs for 2 × 12 pages)`)
})

tap.test('a permanent error exits non-zero with a clear message; status, list and cancel answer JSON', async (t) => {
  const { server, out, token, headers } = await setup(t, 100, 500)
  const env = { BULK_EXPORT_URL: server.base, BULK_EXPORT_TOKEN: token }
  const bad = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', join(out, 'a')], { ...env, BULK_EXPORT_TOKEN: 'bes_nope' }).done
  t.equal(bad.code, 1)
  t.match(bad.stderr, /401 UNAUTHENTICATED — the token is unknown or revoked/)
  const denied = await cli(['pull', '--firm', 'globex', '--type', TYPE, '--out', join(out, 'b')], env).done
  t.equal(denied.code, 1)
  t.match(denied.stderr, /403 FORBIDDEN — you are not a member of firm 'globex'/)
  const cursor = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', join(out, 'c'), '--cursor', 'c2.forged.cursor'], env).done
  t.equal(cursor.code, 1)
  t.match(cursor.stderr, /INVALID_CURSOR/)
  const usage = await cli(['pull', '--firm', FIRM], env).done
  t.equal(usage.code, 2, 'a usage mistake is exit code 2')
  const noToken = await cli(['list'], { BULK_EXPORT_URL: server.base }).done
  t.equal(noToken.code, 2)
  t.match(noToken.stderr, /BULK_EXPORT_TOKEN/)

  const started = (await api(server.base, 'POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { headers })).json().requestId
  const status = await cli(['status', started, '--wait', '10'], env).done
  t.equal(status.code, 0, status.stderr)
  t.equal(JSON.parse(status.stdout).requestId, started)
  const list = await cli(['list', '--status', 'Completed', '--limit', '5'], env).done
  t.equal(list.code, 0)
  t.ok(JSON.parse(list.stdout).requests.some((r: { requestId: string }) => r.requestId === started))
  const cancel = await cli(['cancel', started], env).done
  t.equal(cancel.code, 0)
  t.equal(JSON.parse(cancel.stdout).result.fileExpired, true, 'cancelling a finished request deletes its file')
})

tap.test('Ctrl-C stops with 130 and a resume hint; a lost network is ridden out; a run that is going holds the directory', async (t) => {
  const { server, seeded, out, token } = await setup(t, 4000, 500)
  // For two seconds in the middle of the pull, every connection is dropped.
  let outageFrom = 0
  const proxy = await startFaultProxy(t, server.base, (req, seen) => {
    if (req.url?.startsWith('/api/v1/files/')) {
      if (seen.filter((s) => s.url.startsWith('/api/v1/files/')).length === 3 && outageFrom === 0) outageFrom = Date.now()
      return { delayMs: 150 }
    }
    return outageFrom && Date.now() - outageFrom < 2000 ? { drop: true } : undefined
  })
  const env = { BULK_EXPORT_URL: proxy.base, BULK_EXPORT_TOKEN: token }
  const args = ['pull', '--firm', FIRM, '--type', TYPE, '--out', out]
  const first = cli(args, env)
  const stateFile = join(out, '.bulk-export-state.json')
  const deadline = Date.now() + 30_000
  while ((!existsSync(stateFile) || JSON.parse(readFileSync(stateFile, 'utf8')).pages.length < 2) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  const second = await cli(args, env).done
  t.equal(second.code, 1, 'a second run into the same directory is refused')
  t.match(second.stderr, /another bulk-export \(pid \d+\) is pulling into/)
  first.child.kill('SIGINT')
  const stopped = await first.done
  t.equal(stopped.code, 130, 'Ctrl-C exits 130')
  t.match(stopped.stderr, /run the same command again to go on where it stopped/)
  const resumed = await cli(args, env).done
  t.equal(resumed.code, 0, resumed.stderr)
  t.ok(outageFrom > 0, 'the outage happened')
  t.equal(sha256(joined(out)), seeded.sha256, 'exact, after the stop and the outage')
})

tap.test('--merge: a torn append is cut off, a merged file that changed is refused; --refresh pulls a finished one again; options are checked', async (t) => {
  const { server, seeded, out, token } = await setup(t, 1500, 500)
  const env = { BULK_EXPORT_URL: server.base, BULK_EXPORT_TOKEN: token }
  const dir = join(out, 'm')
  const args = ['pull', '--firm', FIRM, '--type', TYPE, '--out', dir, '--merge']
  t.equal((await cli(args, env).done).code, 0)
  const merged = join(dir, `${TYPE}.ndjson`)
  const full = JSON.parse(readFileSync(join(dir, '.bulk-export-state.json'), 'utf8'))
  // As a kill during the append of page 3 leaves it: the state says two pages, the file holds more.
  const { writeFileSync, appendFileSync, truncateSync } = await import('node:fs')
  const state = { ...full, pages: full.pages.slice(0, 2), objects: 1000, done: false, next: full.pages[2].cursor }
  state.mergedBytes = state.pages[0].bytes + state.pages[1].bytes
  writeFileSync(join(dir, '.bulk-export-state.json'), JSON.stringify(state))
  truncateSync(merged, state.mergedBytes + 1234)
  appendFileSync(merged, '{"id":"torn')
  const resumed = await cli(args, env).done
  t.equal(resumed.code, 0, resumed.stderr)
  t.equal(sha256(readFileSync(merged)), seeded.sha256, 'the torn tail was cut off and page 3 appended once')

  state.done = false
  writeFileSync(join(dir, '.bulk-export-state.json'), JSON.stringify(state))
  rmSync(merged)
  const missing = await cli(args, env).done
  t.equal(missing.code, 1, 'a merged file that went away is not padded')
  t.match(missing.stderr, /users\.ndjson is missing or changed/)

  const pages = join(out, 'p')
  const pageArgs = ['pull', '--firm', FIRM, '--type', TYPE, '--out', pages]
  t.equal((await cli(pageArgs, env).done).code, 0)
  await api(server.base, 'PUT', `/api/v1/idm/${FIRM}/${TYPE}/zzz-new`, { headers: { authorization: `Bearer ${token}` }, body: { id: 'zzz-new' } })
  t.match((await cli(pageArgs, env).done).stderr, /is complete .*--refresh pulls it again/, 'a finished pull is not repeated unasked')
  const refreshed = await cli([...pageArgs, '--refresh'], env).done
  t.equal(refreshed.code, 0, refreshed.stderr)
  t.match(joined(pages).toString(), /zzz-new/, '--refresh pulls what is there now')

  const unfinished = join(out, 'u')
  const { mkdirSync } = await import('node:fs')
  mkdirSync(unfinished)
  writeFileSync(join(unfinished, '.bulk-export-state.json'), JSON.stringify({ ...state, merge: false, done: false, pages: [] }))
  const withCursor = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', unfinished, '--cursor', 'c2.x.y'], env).done
  t.equal(withCursor.code, 2, '--cursor on an unfinished pull is a usage mistake, not ignored')
  for (const bad of [['list', '--limit', 'abc'], ['status', 'export-x', '--wait', '99'], ['list', '--status', 'Running']]) {
    t.equal((await cli(bad, env).done).code, 2, bad.join(' '))
  }
})
