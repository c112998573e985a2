import tap, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { api, createUserOver, seedDataDir, startServer, until } from './helpers/child-server.js'
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
  const { server, seeded, out, token, headers } = await setup(t, 2400, 200)
  // The fourth download of each first run is held: the kill lands with three pages done.
  let holdAt = 4
  let release: () => void = () => {}
  t.teardown(() => release())
  const proxy = await startFaultProxy(t, server.base, (req, seen) => {
    if (!isDownload(seen[seen.length - 1]) || seen.filter(isDownload).length !== holdAt) return undefined
    return { hold: new Promise<void>((resolve) => { release = resolve }) }
  })
  const env = { BULK_EXPORT_URL: proxy.base, BULK_EXPORT_TOKEN: token }
  for (const merge of [false, true]) {
    const dir = join(out, merge ? 'merged' : 'pages')
    const args = ['pull', '--firm', FIRM, '--type', TYPE, '--out', dir, ...(merge ? ['--merge'] : [])]
    holdAt = proxy.seen.filter(isDownload).length + 4
    const run = cli(args, env)
    await until('the fourth download to be held', () => proxy.seen.filter(isDownload).length >= holdAt || undefined, 60_000)
    run.child.kill('SIGKILL')
    const killed = await run.done
    release()
    t.equal(killed.signal, 'SIGKILL', `${merge ? '--merge' : 'pages'}: killed`)
    const stateFile = join(dir, '.bulk-export-state.json')
    const before = JSON.parse(readFileSync(stateFile, 'utf8'))
    t.equal(before.pages.length, 3, 'killed with three of 12 pages done')
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

tap.test('a pull killed but not reaped (a zombie), or a lock naming a live unrelated pid, does not keep the directory', async (t) => {
  const { server, seeded, out, token } = await setup(t, 2000, 500)
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  // The second download is held, so the pull is killed in the middle, holding the directory.
  const proxy = await startFaultProxy(t, server.base, (req, seen) => isDownload(seen[seen.length - 1]) && seen.filter(isDownload).length === 2 ? { hold: held } : undefined)
  const env = { BULK_EXPORT_URL: proxy.base, BULK_EXPORT_TOKEN: token }
  const dir = join(out, 'zombie')
  const args = ['pull', '--firm', FIRM, '--type', TYPE, '--out', dir]
  // The pull's parent is a process that never waits for its children (exec sleep), as under
  // a container's init that does not reap: killed, the pull stays a zombie.
  const quoted = [process.execPath, '--import', 'tsx', 'src/cli/main.ts', ...args].map((a) => `'${a}'`).join(' ')
  const parent = spawn('sh', ['-c', `${quoted} >/dev/null 2>&1 & echo $!; exec sleep 600`], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env } })
  t.teardown(() => parent.kill('SIGKILL'))
  let printed = ''
  parent.stdout.on('data', (d: Buffer) => { printed += d })
  const pid = await until('the pull\'s pid', () => /^\d+\n/.test(printed) ? Number(printed.trim()) : undefined)
  await until('the pull to wait for its second download', () => proxy.seen.filter(isDownload).length >= 2 || undefined, 60_000)
  process.kill(pid, 'SIGKILL')
  const state = await until('the killed pull to be a zombie', () => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z' ? 'Z' : undefined
  })
  t.equal(state, 'Z', `the killed pull (pid ${pid}) is a zombie: kill(pid, 0) still succeeds`)
  t.ok(existsSync(join(dir, '.bulk-export.lock')), 'its lock is left behind')
  release()
  const again = await cli(args, env).done
  t.equal(again.code, 0, again.stderr)
  t.match(again.stderr, /waiting up to/, 'it waited for the dead pull\'s lock to go stale…')
  t.notMatch(again.stderr, /is pulling into/, '…and was not refused')
  t.equal(sha256(joined(dir)), seeded.sha256, 'then finished, exactly')

  // A lock file of an earlier version naming a live process that is not a pull (the sleeping parent).
  const sleeper = parent.pid!
  const legacy = join(out, 'legacy')
  mkdirSync(legacy)
  writeFileSync(join(legacy, '.bulk-export.lock'), String(sleeper))
  // A lock left by a pull killed a minute ago, whose owner file names a live pid.
  const stale = join(out, 'stale')
  mkdirSync(join(stale, '.bulk-export.lock'), { recursive: true })
  writeFileSync(join(stale, '.bulk-export.owner'), JSON.stringify({ pid: sleeper, host: 'here', since: new Date().toISOString() }))
  const minuteAgo = new Date(Date.now() - 60_000)
  utimesSync(join(stale, '.bulk-export.lock'), minuteAgo, minuteAgo)
  for (const d of [legacy, stale]) {
    const run = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', d], { BULK_EXPORT_URL: server.base, BULK_EXPORT_TOKEN: token }).done
    t.equal(run.code, 0, run.stderr)
    t.notMatch(run.stderr, /waiting|is pulling into/, `${d}: taken at once, the pid notwithstanding`)
    t.equal(sha256(joined(d)), seeded.sha256)
    t.same(readdirSync(d).filter((f) => f.includes('lock') || f.includes('owner')), [], 'and released at the end')
  }
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
  // --wait answers at the job's first change; list and cancel below need it Completed.
  await until('the export to complete', async () => (await api(server.base, 'GET', `/api/v1/request/${started}`, { headers })).json().status === 'Completed' || undefined)
  const list = await cli(['list', '--status', 'Completed', '--limit', '5'], env).done
  t.equal(list.code, 0)
  t.ok(JSON.parse(list.stdout).requests.some((r: { requestId: string }) => r.requestId === started))
  const cancel = await cli(['cancel', started], env).done
  t.equal(cancel.code, 0)
  t.equal(JSON.parse(cancel.stdout).result.fileExpired, true, 'cancelling a finished request deletes its file')
})

tap.test('Ctrl-C stops with 130 and a resume hint; a lost network is ridden out; a run that is going holds the directory', async (t) => {
  const { server, seeded, out, token } = await setup(t, 4000, 500)
  // The first run's third download is held until the second run has been refused; in the
  // resumed run, the four requests after its first download find the network gone.
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  let resumed = false
  let resumedDownloads = 0
  let dropped = 0
  const proxy = await startFaultProxy(t, server.base, (req, seen) => {
    const s = seen[seen.length - 1]
    if (!resumed) return isDownload(s) && seen.filter(isDownload).length === 3 ? { hold: held } : undefined
    if (resumedDownloads >= 1 && dropped < 4) {
      dropped++
      return { drop: true }
    }
    if (isDownload(s)) resumedDownloads++
    return undefined
  })
  const env = { BULK_EXPORT_URL: proxy.base, BULK_EXPORT_TOKEN: token }
  const args = ['pull', '--firm', FIRM, '--type', TYPE, '--out', out]
  const first = cli(args, env)
  await until('the first run to wait for its third download', () => proxy.seen.filter(isDownload).length >= 3 || undefined, 60_000)
  const second = await cli(args, env).done
  t.equal(second.code, 1, 'a second run into the same directory is refused')
  t.match(second.stderr, /is locked by another bulk-export \(pid \d+ on this machine.*waiting up to/, 'after saying what it waits for')
  t.match(second.stderr, new RegExp(`another bulk-export \\(pid ${first.child.pid} on this machine, since [^)]+\\) is pulling into`))
  first.child.kill('SIGINT')
  const stopped = await first.done
  release()
  t.equal(stopped.code, 130, 'Ctrl-C exits 130')
  t.match(stopped.stderr, /run the same command again to go on where it stopped/)
  t.notOk(existsSync(join(out, '.bulk-export.lock')), 'a run that stops releases the directory')
  resumed = true
  const rerun = await cli(args, env).done
  t.equal(rerun.code, 0, rerun.stderr)
  t.equal(dropped, 4, 'the outage happened')
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
  const { appendFileSync, truncateSync } = await import('node:fs')
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
  mkdirSync(unfinished)
  writeFileSync(join(unfinished, '.bulk-export-state.json'), JSON.stringify({ ...state, merge: false, done: false, pages: [] }))
  const withCursor = await cli(['pull', '--firm', FIRM, '--type', TYPE, '--out', unfinished, '--cursor', 'c2.x.y'], env).done
  t.equal(withCursor.code, 2, '--cursor on an unfinished pull is a usage mistake, not ignored')
  for (const bad of [['list', '--limit', 'abc'], ['status', 'export-x', '--wait', '99'], ['list', '--status', 'Running']]) {
    t.equal((await cli(bad, env).done).code, 2, bad.join(' '))
  }
})
