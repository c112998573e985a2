/**
 * `npx tsx scripts/soak.ts [--seconds 60] [--pollers 200] [--objects 60000] [--job-size 10000]
 *                          [--users 4] [--chain-tokens 4] [--poll-pause-ms 200] [--chain-poll-ms 100]
 *                          [--workers N] [--dist]`
 *
 * Soak test of the real server, as a child process on loopback:
 *  1. seeds `--objects` SCIM-like users (scripts/demo-data.ts) into a temporary DATA_DIR by
 *     opening the store in this process (openStore + upsertObjects), then closes it;
 *  2. starts the server (`node --import tsx src/server.ts`, or `node dist/server.js` with
 *     `--dist`) on 127.0.0.1 and a free port, with LOG_LEVEL=warn, EXPORT_JOB_SIZE=--job-size
 *     and the default rate limits: every client gets its own token through the admin API
 *     (a firm, `--users` users of it, `--chain-tokens` tokens per user for its export chain
 *     and one token per poller);
 *  3. for `--seconds`, runs `--pollers` closed loops, each on its own keep-alive connection (poller i
 *     belongs to user i mod --users): GET /api/v1/request/{the user's latest job} and
 *     GET /healthz, then a `--poll-pause-ms` pause. Meanwhile each user runs export chains
 *     one after the other: POST export (no cursor), poll every `--chain-poll-ms` until
 *     Completed, stream the file, follow nextCursor until null. Each chain is checked:
 *     every seeded id exactly once, byte-for-byte the seeded JSON, ids strictly ascending
 *     (UTF-8 bytes, SQLite's BINARY order), lines == result.total, bytes == result.bytes,
 *     sha256 == result.sha256, ceil(objects / job size) pages, nextCursor null only at the end;
 *  4. at the deadline every loop stops (a chain still running is abandoned and its job
 *     cancelled with DELETE), the server gets SIGTERM (SIGKILL if it does not stop in 20 s)
 *     and the temporary directory is removed.
 *
 * Errors are network errors, unexpected HTTP statuses (409 included: each user runs one
 * chain at a time), any 5xx, a decreasing `progress.processed`, a server log line at
 * level error or above, and a server that does not stop cleanly. 429s are counted apart.
 * Exit code 1 on any error, any 5xx, any inexact or failed chain, or no completed chain.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import { createServer } from 'node:net'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { openStore } from '../src/store/db.js'
import { createObjectsStore } from '../src/store/objects-store.js'
import { makeUser, objectBatches } from './demo-data.js'
import { percentile, Samples } from './samples.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const FIRM = 'soak'
const TYPE = 'users'
const SEED_BATCH = 10_000
const REQUEST_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 20_000
/** After the deadline, in-flight work gets this long before the watchdog gives up. */
const WATCHDOG_GRACE_MS = 90_000
const MAX_SAMPLES = 12

// ---------------------------------------------------------------------------------------
// Arguments

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    pollers: { type: 'string', default: '200' },
    objects: { type: 'string', default: '60000' },
    'job-size': { type: 'string', default: '10000' },
    users: { type: 'string', default: '4' },
    'chain-tokens': { type: 'string', default: '4' },
    'poll-pause-ms': { type: 'string', default: '200' },
    'chain-poll-ms': { type: 'string', default: '100' },
    workers: { type: 'string' },
    dist: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
})
if (args.help) {
  console.log('usage: npx tsx scripts/soak.ts [--seconds 60] [--pollers 200] [--objects 60000] [--job-size 10000] [--users 4]\n' +
    '                          [--chain-tokens 4] [--poll-pause-ms 200] [--chain-poll-ms 100] [--workers N] [--dist]')
  process.exit(0)
}
function whole (name: string, raw: string | undefined, min: number): number {
  const n = Number(String(raw).replace(/[_,]/g, ''))
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} must be a whole number ≥ ${min} (got ${JSON.stringify(raw)})`)
    process.exit(2)
  }
  return n
}
const SECONDS = whole('seconds', args.seconds, 1)
const POLLERS = whole('pollers', args.pollers, 0)
const OBJECTS = whole('objects', args.objects, 1)
const JOB_SIZE = whole('job-size', args['job-size'], 1)
const USERS = whole('users', args.users, 1)
const CHAIN_TOKENS = whole('chain-tokens', args['chain-tokens'], 1)
const POLL_PAUSE_MS = whole('poll-pause-ms', args['poll-pause-ms'], 0)
const CHAIN_POLL_MS = whole('chain-poll-ms', args['chain-poll-ms'], 0)
const WORKERS = args.workers === undefined ? undefined : whole('workers', args.workers, 1)
const USE_DIST = args.dist

// ---------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
const fmt = (n: number, digits = 0): string => Number.isFinite(n)
  ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
  : '–'
const ms = (v: number): string => Number.isFinite(v) ? v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) : '–'



function bump (map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by)
}

function assertLocal (url: string | URL): URL {
  const u = new URL(url)
  if (u.hostname !== '127.0.0.1' || u.protocol !== 'http:') throw new Error(`refusing a non-local URL: ${u.origin}`)
  return u
}

/** A free TCP port on 127.0.0.1 (closed again before the server binds it). */
async function freePort (): Promise<number> {
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const addr = srv.address()
  srv.close()
  await once(srv, 'close')
  if (addr === null || typeof addr === 'string') throw new Error('no TCP address')
  return addr.port
}

// ---------------------------------------------------------------------------------------
// Counters

type Kind = 'status' | 'healthz' | 'start' | 'chainPoll' | 'download' | 'cancel' | 'admin' | 'readyz'

const counts = {
  /** Requests of the soak phase (from the first poller to the deadline and the drain). */
  requests: new Map<Kind, number>(),
  network: new Map<string, number>(),
  unexpected: new Map<string, number>(),
  tooMany: new Map<string, number>(),
  fiveXx: 0,
  progressDecreased: 0,
  /** TCP connections opened during the soak phase. */
  connections: 0,
  samples: [] as string[],
}
let soaking = false
let soakStart = 0
/** The slowest status poll: when in the soak it started (s) and how long it took (ms). */
const slowestStatus = { at: Number.NaN, ms: 0 }
const statusLatency = new Samples()
const healthLatency = new Samples()

function sample (text: string): void {
  if (counts.samples.length < MAX_SAMPLES) counts.samples.push(text)
}
function errorCount (): number {
  let n = counts.progressDecreased
  for (const v of counts.network.values()) n += v
  for (const v of counts.unexpected.values()) n += v
  return n
}

// ---------------------------------------------------------------------------------------
// HTTP (node:http, keep-alive): each poller has its own connection, like an independent
// client; the export chains, downloads and the admin calls share a pool.

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 })
const agents: http.Agent[] = [agent]

interface Reply { status: number, headers: http.IncomingHttpHeaders, body: Buffer }

/**
 * One request. With `onChunk` the body is streamed to it and not kept. Rejects on network
 * errors and after REQUEST_TIMEOUT_MS.
 */
function send (method: string, url: URL, headers: Record<string, string>, body?: string, onChunk?: (c: Buffer) => void, via: http.Agent = agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(assertLocal(url), { method, agent: via, headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => { if (onChunk) onChunk(c); else parts.push(c) })
      res.on('end', () => {
        if (soaking && !req.reusedSocket) counts.connections++
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) })
      })
      res.on('error', reject)
      res.on('aborted', () => reject(new Error('response aborted')))
    })
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(Object.assign(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`), { code: 'TIMEOUT' })))
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * A counted request: network errors, unexpected statuses (anything not in `expect`),
 * 5xx and 429 are recorded. Returns null on a network error.
 */
async function call (kind: Kind, method: string, url: URL, opts: { token?: string, body?: unknown, expect?: number[], onChunk?: (c: Buffer) => void, latency?: Samples, agent?: http.Agent } = {}): Promise<Reply | null> {
  const headers: Record<string, string> = {}
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  if (soaking) bump(counts.requests as Map<string, number>, kind)
  const t0 = performance.now()
  let reply: Reply
  try {
    reply = await send(method, url, headers, opts.body === undefined ? undefined : JSON.stringify(opts.body), opts.onChunk, opts.agent)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    bump(counts.network, `${kind} ${code}`)
    sample(`${kind} ${method} ${url.pathname}: network error ${code}`)
    return null
  }
  const took = performance.now() - t0
  opts.latency?.push(took)
  if (kind === 'status' && took > slowestStatus.ms) Object.assign(slowestStatus, { at: (t0 - soakStart) / 1000, ms: took })
  const expect = opts.expect ?? [200]
  if (reply.status === 429) {
    bump(counts.tooMany, kind)
  } else if (!expect.includes(reply.status)) {
    if (reply.status >= 500) counts.fiveXx++
    bump(counts.unexpected, `${kind} ${reply.status}`)
    sample(`${kind} ${method} ${url.pathname} → ${reply.status} ${reply.body.subarray(0, 300).toString()}`)
  }
  return reply
}

function json<T> (reply: Reply): T | undefined {
  try { return JSON.parse(reply.body.toString('utf8')) as T } catch { return undefined }
}

/** Seconds from a Retry-After header, within [1, 60]. */
function retryAfterMs (reply: Reply): number {
  const n = Number(reply.headers['retry-after'])
  return (Number.isFinite(n) ? Math.min(60, Math.max(1, n)) : 1) * 1000
}

// ---------------------------------------------------------------------------------------
// Setup: data directory, seed, server

interface StatusView {
  requestId: string
  status: 'Pending' | 'InProgress' | 'Completed' | 'Failed'
  progress?: { processed: number, total?: number }
  result?: { total: number, fileUrl: string, nextCursor: string | null, bytes: number, sha256: string }
  error?: { code: string, message: string }
}

const dataDir = mkdtempSync(join(tmpdir(), 'soak-'))
const adminToken = `soak-admin-${randomBytes(16).toString('hex')}`
let child: ChildProcess | undefined
let cleaned = false
function cleanup (): void {
  if (cleaned) return
  cleaned = true
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  for (const a of agents) a.destroy()
  rmSync(dataDir, { recursive: true, force: true })
}
process.once('SIGINT', () => {
  cleanup()
  process.exit(130)
})

// The expected data set: id → index, and each object's exact JSON bytes.
const expectedIndex = new Map<string, number>()
const expectedDocs: Buffer[] = []
{
  const t0 = performance.now()
  const store = openStore(dataDir)
  try {
    const objects = createObjectsStore(store)
    for (const batch of objectBatches(makeUser, 1, OBJECTS, SEED_BATCH)) {
      // A repeated random id would upsert: keep the first one only.
      const rows = batch.filter(({ id, doc }) => {
        if (expectedIndex.has(id)) return false
        expectedIndex.set(id, expectedDocs.length)
        expectedDocs.push(doc)
        return true
      })
      objects.upsertObjects(FIRM, TYPE, rows, Date.now())
    }
    const stored = objects.countObjects(FIRM, TYPE)
    if (stored !== expectedDocs.length) throw new Error(`seeded ${stored} objects, expected ${expectedDocs.length}`)
  } finally {
    store.sqlite.close()
  }
  const bytes = expectedDocs.reduce((s, d) => s + d.length, 0)
  console.log(`seeded ${fmt(expectedDocs.length)} objects (${fmt(bytes / 1e6, 1)} MB of JSON) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}
const N = expectedDocs.length
const EXPECTED_PAGES = Math.max(1, Math.ceil(N / JOB_SIZE))

// Start the server with only the configuration the soak sets.
const CONFIG_VARS = ['PORT', 'HOST', 'DATA_DIR', 'ADMIN_TOKEN', 'EXPORT_JOB_SIZE', 'EXPORT_WORKERS', 'PUBLIC_URL',
  'FILE_TTL_SECONDS', 'LOG_LEVEL', 'IMPORT_MAX_BYTES', 'OBJECT_MAX_BYTES', 'SIGNING_SECRET', 'SHUTDOWN_GRACE_SECONDS',
  'RATE_LIMIT_POLLS_PER_MINUTE', 'RATE_LIMIT_STARTS_PER_MINUTE', 'MAX_URL_BYTES']
const env: NodeJS.ProcessEnv = { ...process.env }
for (const v of CONFIG_VARS) delete env[v]
const port = await freePort()
Object.assign(env, {
  HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, ADMIN_TOKEN: adminToken, LOG_LEVEL: 'warn',
  EXPORT_JOB_SIZE: String(JOB_SIZE), ...(WORKERS === undefined ? {} : { EXPORT_WORKERS: String(WORKERS) }),
})
const useDist = USE_DIST && existsSync(join(ROOT, 'dist/server.js'))
const serverArgs = useDist ? ['dist/server.js'] : ['--import', 'tsx', 'src/server.ts']
child = spawn(process.execPath, serverArgs, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
const serverPid = child.pid
const base = new URL(`http://127.0.0.1:${port}`)

// Server output: JSON log lines on stdout (warn and above at LOG_LEVEL=warn), anything on stderr.
const serverLog = { warn: 0, error: 0, other: 0, samples: [] as string[] }
function onServerLine (line: string, stream: string): void {
  if (line.trim() === '') return
  let level = 0
  try { level = (JSON.parse(line) as { level?: number }).level ?? 0 } catch {}
  if (level >= 50) serverLog.error++
  else if (level >= 40) serverLog.warn++
  else serverLog.other++
  if (serverLog.samples.length < MAX_SAMPLES) serverLog.samples.push(`${stream}: ${line.slice(0, 400)}`)
}
if (child.stdout) createInterface({ input: child.stdout }).on('line', (l) => onServerLine(l, 'stdout'))
if (child.stderr) createInterface({ input: child.stderr }).on('line', (l) => onServerLine(l, 'stderr'))
let childExit: { code: number | null, signal: NodeJS.Signals | null } | null = null
let stoppingChild = false
const childExited = new Promise<void>((resolve) => {
  child!.on('exit', (code, signal) => {
    childExit = { code, signal }
    if (!stoppingChild) sample(`the server exited unexpectedly (code ${code}, signal ${signal})`)
    resolve()
  })
})

// Peak RSS of the server process (main thread + export worker threads), Linux only.
let peakRss = 0
const rssTimer = setInterval(() => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${serverPid}/status`, 'utf8'))
    if (m) peakRss = Math.max(peakRss, Number(m[1]) * 1024)
  } catch {}
}, 250)

/** CPU seconds used by the server process so far (all threads), from /proc (Linux); NaN elsewhere. */
function serverCpuSeconds (): number {
  try {
    const stat = readFileSync(`/proc/${serverPid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100 // utime + stime, in USER_HZ (100 on Linux)
  } catch {
    return Number.NaN
  }
}
// Never leave the server behind, whatever ends this process.
process.on('exit', () => { if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })

async function stopServer (): Promise<{ ms: number, clean: boolean, how: string }> {
  if (!child || childExit) return { ms: 0, clean: false, how: `already exited (${JSON.stringify(childExit)})` }
  stoppingChild = true
  const t0 = performance.now()
  child.kill('SIGTERM')
  const timedOut = await Promise.race([childExited.then(() => false), sleep(STOP_TIMEOUT_MS).then(() => true)])
  if (timedOut) {
    child.kill('SIGKILL')
    await childExited
    return { ms: performance.now() - t0, clean: false, how: `no exit ${STOP_TIMEOUT_MS / 1000} s after SIGTERM: SIGKILL` }
  }
  const exit = childExit as { code: number | null, signal: NodeJS.Signals | null } | null
  return { ms: performance.now() - t0, clean: exit?.code === 0, how: `SIGTERM → exit code ${exit?.code ?? '–'}${exit?.signal ? ` signal ${exit.signal}` : ''}` }
}

let exitCode = 1
try {
  // Ready?
  const ready0 = performance.now()
  for (;;) {
    if (childExit) throw new Error(`the server exited during start-up: ${JSON.stringify(childExit)}\n${serverLog.samples.join('\n')}`)
    try {
      if ((await send('GET', new URL('/readyz', base), {})).status === 200) break
    } catch {}
    if (performance.now() - ready0 > 60_000) throw new Error('the server was not ready within 60 s')
    await sleep(100)
  }
  console.log(`server ${base.origin} (pid ${serverPid}, ${serverArgs.join(' ')}) ready in ${fmt(performance.now() - ready0)} ms; ` +
    `DATA_DIR=${dataDir} EXPORT_JOB_SIZE=${fmt(JOB_SIZE)} EXPORT_WORKERS=${WORKERS ?? `default (${Math.max(1, availableParallelism() - 1)})`}; ${availableParallelism()} CPUs, node ${process.version}`)

  // ---------------------------------------------------------------------------------------
  // Principals through the admin API: a firm, USERS users, one token per poller.

  const admin = async <T>(method: string, path: string, body: unknown, status: number[]): Promise<T> => {
    const reply = await call('admin', method, new URL(path, base), { token: adminToken, body, expect: status })
    if (!reply || !status.includes(reply.status)) throw new Error(`admin ${method} ${path}: ${reply ? `${reply.status} ${reply.body.toString().slice(0, 300)}` : 'network error'}`)
    return json<T>(reply) as T
  }
  await admin('PUT', `/api/v1/admin/firms/${FIRM}`, { name: 'Soak Corp' }, [200, 201])
  interface UserState { n: number, userId: string, chainTokens: string[], pollerTokens: string[], next: number, latest: string | null }
  const users: UserState[] = []
  for (let u = 0; u < USERS; u++) {
    const created = await admin<{ userId: string, token: string }>('POST', '/api/v1/admin/users', { name: `soak user ${u + 1}`, firms: [FIRM] }, [201])
    users.push({ n: u + 1, userId: created.userId, chainTokens: [created.token], pollerTokens: [], next: 0, latest: null })
  }
  const wanted: Array<{ user: UserState, chain: boolean }> = []
  for (const user of users) for (let i = 1; i < CHAIN_TOKENS; i++) wanted.push({ user, chain: true })
  for (let p = 0; p < POLLERS; p++) wanted.push({ user: users[p % USERS], chain: false })
  for (let i = 0; i < wanted.length; i += 16) {
    await Promise.all(wanted.slice(i, i + 16).map(async ({ user, chain }) => {
      const t = await admin<{ token: string }>('POST', `/api/v1/admin/users/${user.userId}/tokens`, undefined, [201])
      ;(chain ? user.chainTokens : user.pollerTokens).push(t.token)
    }))
  }
  console.log(`admin API: firm '${FIRM}', ${USERS} users, ${USERS * CHAIN_TOKENS} chain tokens, ${POLLERS} poller tokens`)

  // ---------------------------------------------------------------------------------------
  // The soak

  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  soaking = true
  const serverCpu0 = serverCpuSeconds()
  const clientCpu0 = process.cpuUsage()
  const t0 = performance.now()
  soakStart = t0
  const deadline = t0 + SECONDS * 1000
  const left = (): number => deadline - performance.now()
  const watchdog = setTimeout(() => {
    console.error(`watchdog: the soak did not finish ${WATCHDOG_GRACE_MS / 1000} s after its deadline; giving up`)
    cleanup()
    process.exit(1)
  }, SECONDS * 1000 + WATCHDOG_GRACE_MS)
  watchdog.unref()

  async function poller (i: number): Promise<void> {
    const user = users[i % USERS]
    const token = user.pollerTokens[Math.floor(i / USERS)]
    const own = new http.Agent({ keepAlive: true, maxSockets: 1 })
    agents.push(own)
    let seenId: string | null = null
    let seenProcessed = -1
    await sleep(Math.random() * POLL_PAUSE_MS) // spread the loops
    while (left() > 0) {
      const id = user.latest
      if (id !== null) {
        const reply = await call('status', 'GET', new URL(`/api/v1/request/${id}`, base), { token, latency: statusLatency, agent: own })
        if (reply?.status === 200) {
          const view = json<StatusView>(reply)
          const processed = view?.progress?.processed
          if (!view || view.requestId !== id || !['Pending', 'InProgress', 'Completed', 'Failed'].includes(view.status) || typeof processed !== 'number') {
            counts.unexpected.set('status body', (counts.unexpected.get('status body') ?? 0) + 1)
            sample(`status ${id}: unexpected body ${reply.body.subarray(0, 300).toString()}`)
          } else {
            if (id === seenId && processed < seenProcessed) {
              counts.progressDecreased++
              sample(`status ${id}: progress.processed went from ${seenProcessed} to ${processed}`)
            }
            seenId = id
            seenProcessed = processed
          }
        }
        if (reply?.status === 429) await sleep(Math.min(left(), retryAfterMs(reply)))
      }
      if (left() <= 0) break
      await call('healthz', 'GET', new URL('/healthz', base), { latency: healthLatency, agent: own })
      await sleep(Math.min(left(), POLL_PAUSE_MS))
    }
  }

  type ChainEnd = 'exact' | 'inexact' | 'failed' | 'abandoned'
  interface ChainOutcome { user: number, end: ChainEnd, pages: number, lines: number, ms: number, problems: string[] }
  const chains: ChainOutcome[] = []

  /** One export chain of a user, checked line by line against the seed. */
  async function chain (user: UserState): Promise<ChainOutcome> {
    const c0 = performance.now()
    const problems: string[] = []
    const problem = (text: string): void => { if (problems.length < 5) problems.push(text); else if (problems.length === 5) problems.push('…') }
    const seen = new Uint8Array(N)
    let lines = 0
    let pages = 0
    let prevId: Buffer | null = null
    let cursor: string | null = null
    let active: { id: string, token: string } | null = null
    const token = (): string => user.chainTokens[user.next++ % user.chainTokens.length]
    const end = (e: ChainEnd): ChainOutcome => ({ user: user.n, end: e, pages, lines, ms: performance.now() - c0, problems })
    const abandon = async (): Promise<ChainOutcome> => {
      // Free the user's slot (and the worker) rather than leave the job to the shutdown.
      if (active) await call('cancel', 'DELETE', new URL(`/api/v1/request/${active.id}`, base), { token: active.token, expect: [202] })
      return end(problems.length ? 'inexact' : 'abandoned')
    }

    do {
      if (left() <= 0) return abandon()
      // Start (a 429 waits for Retry-After).
      let requestId: string | undefined
      for (;;) {
        const tok = token()
        const reply = await call('start', 'POST', new URL(`/api/v1/idm/${FIRM}/${TYPE}/export`, base), { token: tok, body: cursor === null ? {} : { cursor } })
        if (!reply) return end('failed')
        if (reply.status === 429) {
          if (left() <= 0) return abandon()
          await sleep(Math.min(left(), retryAfterMs(reply)))
          continue
        }
        if (reply.status !== 200) {
          problem(`start: ${reply.status} ${reply.body.subarray(0, 200).toString()}`)
          return end('failed')
        }
        requestId = json<{ requestId?: string }>(reply)?.requestId
        if (!requestId || reply.headers.location !== new URL(`/api/v1/request/${requestId}`, base).href) {
          problem(`start: no requestId or a wrong Location (${reply.headers.location})`)
          return end('failed')
        }
        active = { id: requestId, token: tok }
        user.latest = requestId
        break
      }

      // Poll until finished.
      let view: StatusView | undefined
      let lastProcessed = -1
      for (;;) {
        if (left() <= 0) return abandon()
        const reply = await call('chainPoll', 'GET', new URL(`/api/v1/request/${requestId}`, base), { token: token() })
        if (!reply) return end('failed')
        if (reply.status === 200) {
          view = json<StatusView>(reply)
          const processed = view?.progress?.processed ?? -1
          if (processed < lastProcessed) {
            counts.progressDecreased++
            sample(`chain ${requestId}: progress.processed went from ${lastProcessed} to ${processed}`)
          }
          lastProcessed = processed
          if (view?.status === 'Completed') break
          if (view?.status === 'Failed') {
            problem(`job ${requestId} Failed: ${JSON.stringify(view.error)}`)
            active = null
            return end('failed')
          }
        } else if (reply.status !== 429) {
          return end('failed')
        }
        await sleep(Math.min(left(), reply.status === 429 ? retryAfterMs(reply) : CHAIN_POLL_MS))
      }
      active = null
      const result = view?.result
      if (!result) {
        problem(`job ${requestId}: Completed without a result`)
        return end('inexact')
      }
      pages++

      // Download (no Authorization: the URL is signed), checking every line.
      const hash = createHash('sha256')
      let bytes = 0
      let fileLines = 0
      let rest: Buffer | null = null
      const onLine = (line: Buffer): void => {
        fileLines++
        lines++
        let id: string | undefined
        // Fast path: the line starts with {"id":"…" and the id has no escapes.
        if (line.length > 8 && line[0] === 0x7b && line.subarray(0, 7).toString('latin1') === '{"id":"') {
          const q = line.indexOf(0x22, 7)
          if (q > 7 && !line.subarray(7, q).includes(0x5c)) id = line.subarray(7, q).toString('utf8')
        }
        if (id === undefined) {
          try { id = (JSON.parse(line.toString('utf8')) as { id?: string }).id } catch {}
        }
        if (typeof id !== 'string') {
          problem(`page ${pages} line ${fileLines}: no id (${line.subarray(0, 80).toString()})`)
          return
        }
        const idBytes = Buffer.from(id, 'utf8')
        if (prevId !== null && Buffer.compare(prevId, idBytes) >= 0) problem(`page ${pages} line ${fileLines}: id ${id} does not follow ${prevId.toString()}`)
        prevId = idBytes
        const idx = expectedIndex.get(id)
        if (idx === undefined) {
          problem(`page ${pages} line ${fileLines}: unknown id ${id}`)
          return
        }
        if (seen[idx]) problem(`page ${pages} line ${fileLines}: id ${id} exported twice in the chain`)
        seen[idx] = 1
        if (!expectedDocs[idx].equals(line)) problem(`page ${pages} line ${fileLines}: id ${id}: the JSON differs from the seeded object`)
      }
      const reply = await call('download', 'GET', assertLocal(result.fileUrl), {
        onChunk: (chunk) => {
          hash.update(chunk)
          bytes += chunk.length
          const data: Buffer = rest ? Buffer.concat([rest, chunk]) : chunk
          rest = null
          let pos = 0
          for (;;) {
            const nl = data.indexOf(0x0a, pos)
            if (nl === -1) break
            onLine(data.subarray(pos, nl))
            pos = nl + 1
          }
          if (pos < data.length) rest = Buffer.from(data.subarray(pos))
        },
      })
      if (!reply) return end('failed')
      if (reply.status !== 200) return end('failed')
      if (reply.headers['content-type'] !== 'application/x-ndjson') problem(`page ${pages}: Content-Type ${reply.headers['content-type']}`)
      if (rest !== null) problem(`page ${pages}: the file does not end with \\n (${(rest as Buffer).length} bytes after the last newline)`)
      const sha = hash.digest('hex')
      if (sha !== result.sha256) problem(`page ${pages}: sha256 ${sha} != result.sha256 ${result.sha256}`)
      if (bytes !== result.bytes) problem(`page ${pages}: ${bytes} bytes != result.bytes ${result.bytes}`)
      if (fileLines !== result.total) problem(`page ${pages}: ${fileLines} lines != result.total ${result.total}`)
      if (fileLines === 0 && N > 0) problem(`page ${pages}: an empty page`)
      cursor = result.nextCursor
      if (cursor !== null && pages >= EXPECTED_PAGES) {
        problem(`page ${pages}: nextCursor is still set after ${EXPECTED_PAGES} pages`)
        return end('inexact')
      }
    } while (cursor !== null)

    if (lines !== N) problem(`the chain has ${lines} lines, ${N} were seeded`)
    if (pages !== EXPECTED_PAGES) problem(`the chain has ${pages} pages, expected ${EXPECTED_PAGES}`)
    let missing = 0
    for (let i = 0; i < N; i++) if (!seen[i]) missing++
    if (missing) problem(`${missing} seeded ids never exported`)
    return end(problems.length ? 'inexact' : 'exact')
  }

  async function chainLoop (user: UserState): Promise<void> {
    while (left() > 0) {
      const outcome = await chain(user)
      chains.push(outcome)
      if (outcome.end === 'failed') await sleep(Math.min(left(), 1000)) // do not spin on a failing server
    }
  }

  console.log(`soaking for ${SECONDS} s: ${POLLERS} pollers (pause ${POLL_PAUSE_MS} ms), ${USERS} users each running export chains ` +
    `(${fmt(N)} objects, ${EXPECTED_PAGES} pages of ≤ ${fmt(JOB_SIZE)}, polled every ${CHAIN_POLL_MS} ms)`)
  const progress = setInterval(() => {
    const total = [...counts.requests.values()].reduce((a, b) => a + b, 0)
    const done = chains.filter((c) => c.end === 'exact').length
    console.log(`  t=${((performance.now() - t0) / 1000).toFixed(0)} s: ${fmt(total)} requests, ${errorCount()} errors, ${counts.fiveXx} 5xx, ${done} exact chains`)
  }, 10_000)
  await Promise.all([
    ...Array.from({ length: POLLERS }, (_, i) => poller(i)),
    ...users.map((u) => chainLoop(u)),
  ])
  clearInterval(progress)
  const wallMs = performance.now() - t0
  const serverCores = (serverCpuSeconds() - serverCpu0) / (wallMs / 1000)
  const clientCpu = process.cpuUsage(clientCpu0)
  const clientCores = (clientCpu.user + clientCpu.system) / 1000 / wallMs
  soaking = false
  loopDelay.disable()
  clearTimeout(watchdog)

  // ---------------------------------------------------------------------------------------
  // Stop the server, then the report

  const stop = await stopServer()
  clearInterval(rssTimer)

  const totalRequests = [...counts.requests.values()].reduce((a, b) => a + b, 0)
  const errors = errorCount()
  const st = statusLatency.sorted()
  const hz = healthLatency.sorted()
  const by = (e: ChainEnd): ChainOutcome[] => chains.filter((c) => c.end === e)
  const exact = by('exact')
  const inexact = by('inexact')
  const failed = by('failed')
  const abandoned = by('abandoned')
  const chainMs = exact.map((c) => c.ms).sort((a, b) => a - b)
  const mapText = (m: Map<string, number>): string => [...m].map(([k, v]) => `${v}× ${k}`).join(', ') || '0'
  const reqText = (['status', 'healthz', 'start', 'chainPoll', 'download', 'cancel'] as Kind[])
    .map((k) => `${k} ${fmt(counts.requests.get(k) ?? 0)}`).join(', ')

  const out: string[] = []
  out.push('', `### Soak: ${SECONDS} s, ${POLLERS} pollers, ${USERS} users running export chains of ${fmt(N)} objects (job size ${fmt(JOB_SIZE)})`, '')
  out.push('| metric | value |', '|---|---:|')
  out.push(`| duration | ${(wallMs / 1000).toFixed(1)} s |`)
  out.push(`| requests | ${fmt(totalRequests)} (${reqText}) |`)
  out.push(`| TCP connections opened (${POLLERS} pollers with one each, the chains share a pool) | ${fmt(counts.connections)} |`)
  out.push(`| requests/s | ${fmt(totalRequests / (wallMs / 1000))} |`)
  out.push(`| errors (network + unexpected status + progress decreasing) | **${errors}**${errors ? ` (network: ${mapText(counts.network)}; unexpected: ${mapText(counts.unexpected)}; progress decreased: ${counts.progressDecreased})` : ''} |`)
  out.push(`| 5xx | **${counts.fiveXx}** |`)
  out.push(`| 429 (rate limited, not counted as errors) | ${mapText(counts.tooMany)} |`)
  out.push(`| status poll latency (pollers), n=${fmt(st.length)} | p50 ${ms(percentile(st, 0.5))} ms, p99 **${ms(percentile(st, 0.99))}** ms, max ${ms(st.length ? st[st.length - 1] : Number.NaN)} ms (at t=${fmt(slowestStatus.at, 1)} s) |`)
  out.push(`| /healthz latency, n=${fmt(hz.length)} | p50 ${ms(percentile(hz, 0.5))} ms, p99 ${ms(percentile(hz, 0.99))} ms, max ${ms(hz.length ? hz[hz.length - 1] : Number.NaN)} ms |`)
  out.push(`| export chains completed and exact | **${exact.length}** (${users.map((u) => `user ${u.n}: ${exact.filter((c) => c.user === u.n).length}`).join(', ')}); ` +
    `chain time p50 ${fmt((chainMs[Math.floor(chainMs.length / 2)] ?? Number.NaN) / 1000, 1)} s, max ${fmt((chainMs[chainMs.length - 1] ?? Number.NaN) / 1000, 1)} s |`)
  out.push(`| chains inexact / failed / abandoned at the deadline | ${inexact.length} / ${failed.length} / ${abandoned.length} |`)
  out.push(`| objects exported and verified (exact chains) | ${fmt(exact.reduce((s, c) => s + c.lines, 0))} |`)
  out.push(`| CPU during the soak (${availableParallelism()} CPUs): server / soak client | ${fmt(serverCores, 2)} / ${fmt(clientCores, 2)} cores |`)
  out.push(`| server peak RSS | ${peakRss ? `${fmt(peakRss / 2 ** 20)} MiB` : '–'} |`)
  out.push(`| server log lines: warn / error+ / other | ${serverLog.warn} / ${serverLog.error} / ${serverLog.other} |`)
  out.push(`| server stop | ${stop.how} in ${fmt(stop.ms)} ms |`)
  out.push(`| soak client event-loop delay (its own lag inflates latencies) | p50 ${ms(Math.max(0, loopDelay.percentile(50) / 1e6 - 10))} ms, p99 ${ms(Math.max(0, loopDelay.percentile(99) / 1e6 - 10))} ms, max ${ms(Math.max(0, loopDelay.max / 1e6 - 10))} ms |`)
  console.log(out.join('\n'))
  const bad = [...inexact, ...failed]
  for (const c of bad.slice(0, 10)) console.log(`chain of user ${c.user} ${c.end} after ${c.pages} pages: ${c.problems.join('; ') || '(see errors)'}`)
  if (bad.length > 10) console.log(`… and ${bad.length - 10} more inexact or failed chains`)
  if (counts.samples.length) console.log(`\nfirst errors:\n  ${counts.samples.join('\n  ')}`)
  if (serverLog.samples.length) console.log(`\nserver output:\n  ${serverLog.samples.join('\n  ')}`)

  const reasons: string[] = []
  if (errors) reasons.push(`${errors} errors`)
  if (counts.fiveXx) reasons.push(`${counts.fiveXx} 5xx`)
  if (inexact.length) reasons.push(`${inexact.length} inexact chains`)
  if (failed.length) reasons.push(`${failed.length} failed chains`)
  if (exact.length === 0) reasons.push('no chain completed')
  if (serverLog.error) reasons.push(`${serverLog.error} server log lines at level error`)
  if (!stop.clean) reasons.push(`the server did not stop cleanly (${stop.how})`)
  console.log(`\nRESULT: ${reasons.length ? `FAIL (${reasons.join(', ')})` : 'PASS (0 errors, 0 5xx, every chain exact)'}`)
  exitCode = reasons.length ? 1 : 0
} catch (err) {
  console.error(`soak aborted: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  if (serverLog.samples.length) console.error(`server output:\n  ${serverLog.samples.join('\n  ')}`)
  exitCode = 1
} finally {
  clearInterval(rssTimer)
  if (child && !childExit) await stopServer()
  cleanup()
}
process.exit(exitCode)
