/**
 * `npx tsx scripts/bench-export.ts [--objects N] [--job-size N] [--probes N]`
 *
 * End-to-end benchmark of the export path through the real application and HTTP:
 *  1. starts buildApp() on a temporary DATA_DIR (127.0.0.1, port 0, LOG_LEVEL=warn) and
 *     creates a firm and a user (two tokens) through the admin API;
 *  2. seeds N SCIM-like users (random-order ids) with upsertObjects, 10k per transaction;
 *  3. runs the whole export chain over HTTP (start → poll every 100 ms → download →
 *     follow nextCursor …) and checks every object came out once, ids strictly increasing;
 *  4. meanwhile runs `--probes` closed loops of status polls and /healthz on keep-alive
 *     connections and records their latencies; samples the server's RSS every 200 ms and
 *     its event-loop delay and utilisation;
 *  5. downloads the first page again, plain and with `Accept-Encoding: gzip`.
 *
 * Three processes, so that each measurement is about one party: this one is the server
 * (main thread + export worker threads: its RSS and event loop are the server's alone);
 * a forked "chain" client runs the export chain and the downloads; a forked "probe"
 * client runs the latency loops with its own token. All share this machine's CPUs.
 * Everything lives in a temporary directory that is removed at the end.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import http from 'node:http'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createGunzip } from 'node:zlib'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { DB_FILE } from '../src/store/db.js'
import { createObjectsStore } from '../src/store/objects-store.js'
import { makeUser, objectBatches } from './demo-data.js'
import { percentile, Samples } from './samples.js'

const FIRM = 'bench'
const TYPE = 'users'
const SEED_BATCH = 10_000
const POLL_MS = 100
const RSS_EVERY_MS = 200
const LOOP_DELAY_RESOLUTION_MS = 10
const ROLE_ENV = 'BENCH_EXPORT_ROLE'

// ---------------------------------------------------------------------------------------
// Messages between the processes

interface ChainParams { base: string, token: string, firmId: string, objectType: string }
interface ProbeParams { base: string, token: string, probes: number }

interface PageResult {
  requestId: string
  total: number
  lines: number
  bytes: number
  reportedBytes: number
  /** createdAt (server clock) → first poll that saw Completed (client clock, same machine). */
  jobMs: number
  polls: number
  downloadMs: number
  endsWithNewline: boolean
  nextCursorNull: boolean
}

interface GzipResult {
  encoding: string
  compressedBytes: number
  decompressedBytes: number
  expectedBytes: number
  ms: number
  plainMs: number
  plainBytes: number
}

/** CPU time used (all threads of the process) and main-thread event-loop utilisation. */
interface Usage { cpuMs: number, wallMs: number, elu: number }

interface ChainResult {
  pages: PageResult[]
  /** Epoch ms (with fractions): whole chain and each job's [POST sent, Completed seen]. */
  chainFrom: number
  chainTo: number
  windows: Array<[number, number]>
  lines: number
  bytes: number
  outOfOrder: number
  unparsed: number
  lastCursorNull: boolean
  gzip: GzipResult | null
  usage: Usage
}

interface LatencyStats { count: number, errors: Record<string, number>, perSecond: number, p50: number, p99: number, max: number }

interface ProbeResult {
  statusDuringJobs: LatencyStats
  statusWholeChain: LatencyStats
  healthDuringJobs: LatencyStats
  usage: Usage
}

type ToParent =
  | { type: 'chainStart' }
  | { type: 'jobStarted', requestId: string }
  | { type: 'page', index: number, page: PageResult }
  | { type: 'chainEnd', windows: Array<[number, number]>, chainFrom: number, chainTo: number }
  | { type: 'chainResult', result: ChainResult }
  | { type: 'probeResult', result: ProbeResult }
  | { type: 'error', message: string }

type ToChild =
  | { type: 'init', chain?: ChainParams, probe?: ProbeParams }
  | { type: 'chainStart' }
  | { type: 'jobStarted', requestId: string }
  | { type: 'stop', windows: Array<[number, number]>, chainFrom: number, chainTo: number }
  | { type: 'go' }

// ---------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n: number, digits = 0): string => Number.isFinite(n)
  ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
  : '–'
const mb = (bytes: number): number => bytes / 1e6
/** Epoch milliseconds with sub-millisecond resolution, comparable across processes. */
const nowMs = (): number => performance.timeOrigin + performance.now()


/** Measures CPU and event-loop utilisation of this process from now on. */
function usageMeter (): () => Usage {
  const cpu0 = process.cpuUsage()
  const elu0 = performance.eventLoopUtilization()
  const t0 = performance.now()
  return () => {
    const cpu = process.cpuUsage(cpu0)
    const elu: EventLoopUtilization = performance.eventLoopUtilization(elu0)
    return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0, elu: elu.utilization }
  }
}

/** Busy cores of the whole machine (all processes) from now on, from /proc/stat (Linux). */
function machineMeter (): () => number {
  const read = (): { busy: number, total: number } | null => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
      const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
      return { busy: total - f[3] - f[4], total } // minus idle and iowait
    } catch {
      return null
    }
  }
  const a = read()
  return () => {
    const b = read()
    if (!a || !b || b.total === a.total) return Number.NaN
    return (b.busy - a.busy) / (b.total - a.total) * availableParallelism()
  }
}


function assertLocal (url: string | URL): URL {
  const u = new URL(url)
  if (u.hostname !== '127.0.0.1') throw new Error(`refusing to fetch a non-local URL: ${u.origin}`)
  return u
}

/** GET with node:http; `onResponse` may return a consumer for the body chunks. */
function httpGet (
  agent: http.Agent | undefined, url: URL, headers: Record<string, string>,
  onResponse?: (res: http.IncomingMessage) => ((chunk: Buffer) => void) | undefined,
): Promise<{ status: number, bytes: number, headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers }, (res) => {
      const onData = onResponse?.(res)
      let bytes = 0
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length
        onData?.(chunk)
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, headers: res.headers }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

/**
 * The child's side of the IPC channel. Messages are kept, so a message that arrived before
 * its listener (messages read in one chunk are emitted back to back, before any promise
 * continuation runs) is still seen: `next` takes the oldest unconsumed one of its type and
 * `on` replays what came before.
 */
function childMessages (): { send: (m: ToParent) => void, next: <T extends ToChild['type']>(type: T) => Promise<Extract<ToChild, { type: T }>>, on: (fn: (m: ToChild) => void) => void } {
  const received: ToChild[] = []
  const consumed = new Set<number>()
  const waiting = new Map<string, () => void>()
  const listeners: Array<(m: ToChild) => void> = []
  process.on('message', (m: ToChild) => {
    received.push(m)
    for (const l of listeners) l(m)
    const w = waiting.get(m.type)
    if (w) {
      waiting.delete(m.type)
      w()
    }
  })
  const take = (type: string): ToChild | undefined => {
    const i = received.findIndex((m, j) => m.type === type && !consumed.has(j))
    if (i === -1) return undefined
    consumed.add(i)
    return received[i]
  }
  return {
    send: (m) => { process.send?.(m) },
    next: <T extends ToChild['type']>(type: T) => new Promise<Extract<ToChild, { type: T }>>((resolve) => {
      const now = take(type)
      if (now) return resolve(now as Extract<ToChild, { type: T }>)
      waiting.set(type, () => resolve(take(type) as Extract<ToChild, { type: T }>))
    }),
    on: (fn) => {
      for (const m of received) fn(m)
      listeners.push(fn)
    },
  }
}

// ---------------------------------------------------------------------------------------
// Chain client (forked child): the export chain and the downloads

/**
 * Counts lines and bytes of NDJSON streams and checks that the ids (read cheaply from the
 * `{"id":"…"` each line starts with) strictly increase across all files of a chain.
 * Ids compare as UTF-8 bytes, as SQLite's BINARY collation orders them.
 */
class IdScanner {
  lines = 0
  bytes = 0
  outOfOrder = 0
  unparsed = 0
  lastByte = -1
  private prev: Buffer | null = null
  private head: Buffer | null = null // the start of a line whose id crosses a chunk boundary
  private atLineStart = true
  private static readonly PREFIX = Buffer.from('{"id":"')

  /** A new file begins: its first byte begins a line. */
  beginFile (): void {
    if (this.head) {
      this.unparsed++ // the previous file ended inside a line's id
      this.head = null
    }
    this.atLineStart = true
    this.lastByte = -1
  }

  push (chunk: Buffer): void {
    if (chunk.length === 0) return
    this.bytes += chunk.length
    this.lastByte = chunk[chunk.length - 1]
    let pos = 0
    if (this.head) {
      // Complete the pending line head with the start of this chunk.
      const nl = chunk.indexOf(0x0a)
      const joined = Buffer.concat([this.head, nl === -1 ? chunk : chunk.subarray(0, nl + 1)])
      this.head = null
      if (this.lineStart(joined, 0) === -1) this.head = joined // still incomplete (tiny chunks)
      if (nl === -1) return
      this.lines++
      pos = nl + 1
      this.atLineStart = true
    }
    if (this.atLineStart && pos < chunk.length) {
      if (this.lineStart(chunk, pos) === -1) this.head = Buffer.from(chunk.subarray(pos))
      this.atLineStart = false
    }
    for (;;) {
      const nl = chunk.indexOf(0x0a, pos)
      if (nl === -1) break
      this.lines++
      pos = nl + 1
      if (pos === chunk.length) {
        this.atLineStart = true
        break
      }
      if (this.lineStart(chunk, pos) === -1) this.head = Buffer.from(chunk.subarray(pos))
    }
  }

  /** Reads the id of the line starting at `s`; -1 when the buffer ends before the id does. */
  private lineStart (buf: Buffer, s: number): number {
    const P = IdScanner.PREFIX
    const avail = Math.min(buf.length - s, P.length)
    if (buf.compare(P, 0, avail, s, s + avail) !== 0) {
      this.unparsed++
      return 0
    }
    if (avail < P.length) return -1
    const q = buf.indexOf(0x22, s + P.length)
    const nl = buf.indexOf(0x0a, s)
    if (q === -1 || (nl !== -1 && nl < q)) {
      if (nl !== -1 || buf.length - s > 4096) {
        this.unparsed++
        return 0
      }
      return -1
    }
    const id = buf.subarray(s + P.length, q)
    if (id.includes(0x5c)) this.unparsed++ // an escaped id would be compared raw: flag it
    if (this.prev !== null && Buffer.compare(this.prev, id) >= 0) this.outOfOrder++
    this.prev = id
    return q
  }
}

async function runChain (p: ChainParams, io: ReturnType<typeof childMessages>): Promise<ChainResult> {
  const auth = { authorization: `Bearer ${p.token}` }
  const base = assertLocal(p.base)
  const windows: Array<[number, number]> = []
  const scanner = new IdScanner()
  const pages: PageResult[] = []
  let cursor: string | null = null
  let lastCursorNull = false
  let firstFileUrl: string | null = null
  let firstPageBytes = 0

  io.send({ type: 'chainStart' })
  await io.next('go') // the server has started its meters and the probes are running
  const usage = usageMeter()
  const chainFrom = nowMs()
  do {
    const post0 = nowMs()
    const res: Response = await fetch(new URL(`/api/v1/idm/${p.firmId}/${p.objectType}/export`, base), {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify(cursor === null ? {} : { cursor }),
    })
    const started = await res.json() as { requestId?: string }
    if (res.status !== 200 || !started.requestId) throw new Error(`start export: ${res.status} ${JSON.stringify(started)}`)
    const requestId = started.requestId
    io.send({ type: 'jobStarted', requestId })
    let view: { status: string, createdAt: string, result?: { total: number, fileUrl: string, nextCursor: string | null, bytes: number }, error?: unknown }
    let polls = 0
    for (;;) {
      const r = await fetch(new URL(`/api/v1/request/${requestId}`, base), { headers: auth })
      view = await r.json() as typeof view
      polls++
      if (r.status !== 200) throw new Error(`status: ${r.status} ${JSON.stringify(view)}`)
      if (view.status === 'Completed') break
      if (view.status === 'Failed') throw new Error(`export failed: ${JSON.stringify(view.error)}`)
      await sleep(POLL_MS)
    }
    const completed = nowMs()
    windows.push([post0, completed])
    const result = view.result
    if (!result) throw new Error('Completed without a result')
    const jobMs = completed - Date.parse(view.createdAt)

    // Download: stream to /dev/null, counting bytes and lines, checking the ids.
    const dl0 = performance.now()
    const linesBefore = scanner.lines
    const bytesBefore = scanner.bytes
    scanner.beginFile()
    const fileRes = await fetch(assertLocal(result.fileUrl))
    if (fileRes.status !== 200 || !fileRes.body) throw new Error(`download: ${fileRes.status}`)
    const sink = createWriteStream('/dev/null')
    for await (const chunk of fileRes.body) {
      const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      scanner.push(buf)
      if (!sink.write(buf)) await once(sink, 'drain')
    }
    sink.end()
    await once(sink, 'finish')
    const page: PageResult = {
      requestId,
      total: result.total,
      lines: scanner.lines - linesBefore,
      bytes: scanner.bytes - bytesBefore,
      reportedBytes: result.bytes,
      jobMs,
      polls,
      downloadMs: performance.now() - dl0,
      endsWithNewline: result.total === 0 || scanner.lastByte === 0x0a,
      nextCursorNull: result.nextCursor === null,
    }
    pages.push(page)
    io.send({ type: 'page', index: pages.length, page })
    if (firstFileUrl === null) {
      firstFileUrl = result.fileUrl
      firstPageBytes = result.bytes
    }
    cursor = result.nextCursor
    lastCursorNull = cursor === null
  } while (cursor !== null)
  const chainTo = nowMs()
  const chainUsage = usage()
  io.send({ type: 'chainEnd', windows, chainFrom, chainTo })
  await io.next('go') // the probes have stopped: the server is idle

  // The first page again, plain and gzip, one after the other on an idle server.
  let gzip: GzipResult | null = null
  if (firstFileUrl !== null && firstPageBytes > 0) {
    const url = assertLocal(firstFileUrl)
    const plain0 = performance.now()
    const plain = await httpGet(undefined, url, {})
    const plainMs = performance.now() - plain0
    let decompressedBytes = 0
    let inflated: Promise<unknown> = Promise.resolve()
    const gz0 = performance.now()
    const gz = await httpGet(undefined, url, { 'accept-encoding': 'gzip' }, (res) => {
      if (res.headers['content-encoding'] !== 'gzip') return undefined
      const gunzip = createGunzip()
      gunzip.on('data', (c: Buffer) => { decompressedBytes += c.length })
      inflated = once(gunzip, 'end')
      res.on('end', () => gunzip.end())
      return (c) => { gunzip.write(c) }
    })
    const ms = performance.now() - gz0
    const encoding = String(gz.headers['content-encoding'] ?? 'identity')
    if (encoding === 'gzip') await inflated
    else decompressedBytes = gz.bytes
    gzip = { encoding, compressedBytes: gz.bytes, decompressedBytes, expectedBytes: firstPageBytes, ms, plainMs, plainBytes: plain.bytes }
  }

  return {
    pages,
    chainFrom,
    chainTo,
    windows,
    lines: scanner.lines,
    bytes: scanner.bytes,
    outOfOrder: scanner.outOfOrder,
    unparsed: scanner.unparsed,
    lastCursorNull,
    gzip,
    usage: chainUsage,
  }
}

// ---------------------------------------------------------------------------------------
// Probe client (forked child): closed loops of status polls and /healthz

async function runProbes (p: ProbeParams, io: ReturnType<typeof childMessages>): Promise<ProbeResult> {
  const auth = { authorization: `Bearer ${p.token}` }
  const base = assertLocal(p.base)
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, p.probes) })
  let requestId: string | null = null
  let probing = true
  let usage: (() => Usage) | null = null
  io.on((m) => {
    if (m.type === 'jobStarted') requestId = m.requestId
    if (m.type === 'chainStart') usage = usageMeter()
  })
  const kinds = {
    status: { start: new Samples(), lat: new Samples(), code: new Samples() },
    health: { start: new Samples(), lat: new Samples(), code: new Samples() },
  }
  // Each loop alternates a status poll (of the chain's current request) and /healthz.
  const loops = Array.from({ length: p.probes }, async (_, i) => {
    let k = i
    while (probing) {
      const id: string | null = requestId
      const isStatus = id !== null && k++ % 2 === 0
      const url = new URL(isStatus ? `/api/v1/request/${id}` : '/healthz', base)
      const t0 = nowMs()
      let code = 0
      try {
        code = (await httpGet(agent, url, isStatus ? auth : {})).status
      } catch {
        code = 0
      }
      const kind = isStatus ? kinds.status : kinds.health
      kind.start.push(t0)
      kind.lat.push(nowMs() - t0)
      kind.code.push(code)
      if (code !== 200) await sleep(10)
    }
  })
  const stop = await io.next('stop')
  probing = false
  const usageResult = (usage as (() => Usage) | null)?.() ?? { cpuMs: 0, wallMs: 0, elu: 0 }
  await Promise.all(loops)
  agent.destroy()

  const { windows, chainFrom, chainTo } = stop
  const inJobs = (t: number): boolean => {
    // windows are sorted and disjoint: find the last one starting at or before t
    let lo = 0
    let hi = windows.length - 1
    let found = -1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (windows[mid][0] <= t) {
        found = mid
        lo = mid + 1
      } else {
        hi = mid - 1
      }
    }
    return found !== -1 && t <= windows[found][1]
  }
  const jobSeconds = windows.reduce((s, [a, b]) => s + (b - a), 0) / 1000
  const inChain = (t: number): boolean => t >= chainFrom && t <= chainTo
  const stats = (kind: typeof kinds.status, inWindow: (t: number) => boolean, seconds: number): LatencyStats => {
    const picked: number[] = []
    const errors: Record<string, number> = {}
    for (let i = 0; i < kind.lat.length; i++) {
      if (!inWindow(kind.start.at(i))) continue
      const code = kind.code.at(i)
      if (code === 200) picked.push(kind.lat.at(i))
      else errors[code === 0 ? 'network' : String(code)] = (errors[code === 0 ? 'network' : String(code)] ?? 0) + 1
    }
    const sorted = Float64Array.from(picked).sort()
    return {
      count: sorted.length,
      errors,
      perSecond: seconds > 0 ? sorted.length / seconds : 0,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      max: sorted.length ? sorted[sorted.length - 1] : Number.NaN,
    }
  }
  return {
    statusDuringJobs: stats(kinds.status, inJobs, jobSeconds),
    statusWholeChain: stats(kinds.status, inChain, (chainTo - chainFrom) / 1000),
    healthDuringJobs: stats(kinds.health, inJobs, jobSeconds),
    usage: usageResult,
  }
}

async function childMain (role: string): Promise<void> {
  const io = childMessages()
  const init = await io.next('init')
  try {
    if (role === 'chain' && init.chain) io.send({ type: 'chainResult', result: await runChain(init.chain, io) })
    else if (role === 'probe' && init.probe) io.send({ type: 'probeResult', result: await runProbes(init.probe, io) })
    else throw new Error(`bad role ${role}`)
  } catch (err) {
    io.send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  }
  process.disconnect?.()
}

// ---------------------------------------------------------------------------------------
// Server side (this process): the app, seeding, RSS and event-loop sampling, the report

function wholeNumber (name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback
  const n = Number(raw.replace(/[_,]/g, ''))
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} must be a whole number ≥ ${min} (got ${JSON.stringify(raw)})`)
    process.exit(2)
  }
  return n
}

interface ServerMeasures {
  objects: number
  jobSize: number
  probes: number
  exportWorkers: number
  seedMs: number
  insertMs: number
  docBytes: number
  dbBytes: number
  chain: ChainResult
  probe: ProbeResult | null
  jobs: Map<string, { createdAt: number, startedAt: number, finishedAt: number }>
  peakRss: Record<string, number>
  loopDelay: { p50: number, p99: number, max: number } | null
  serverUsage: Usage
  machineCores: number
  load: { before: number, after: number }
}

async function serverMain (): Promise<void> {
  const { values } = parseArgs({
    options: {
      objects: { type: 'string' },
      'job-size': { type: 'string' },
      probes: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  })
  if (values.help) {
    console.log('usage: npx tsx scripts/bench-export.ts [--objects N (1000000)] [--job-size N (100000)] [--probes N status/healthz loops (10; 0 = none)]')
    return
  }
  const objects = wholeNumber('objects', values.objects, 1_000_000, 0)
  const jobSize = wholeNumber('job-size', values['job-size'], 100_000, 1)
  const probes = wholeNumber('probes', values.probes, 10, 0)

  const dataDir = mkdtempSync(join(tmpdir(), 'bench-export-'))
  const adminToken = `bench-admin-${randomBytes(16).toString('hex')}`
  // Only what the benchmark sets; nothing from the caller's environment (PUBLIC_URL …).
  // The per-token rate limits are raised: this measures capacity, not the limiter's policy.
  const config = loadConfig({
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'warn',
    ADMIN_TOKEN: adminToken,
    EXPORT_JOB_SIZE: String(jobSize),
    RATE_LIMIT_POLLS_PER_MINUTE: '1000000',
    RATE_LIMIT_STARTS_PER_MINUTE: '1000000',
  })

  // Peak RSS of this process (the server: main thread + export worker threads), by phase.
  let phase = 'start'
  const peakRss: Record<string, number> = {}
  const sampleRss = (): void => { peakRss[phase] = Math.max(peakRss[phase] ?? 0, process.memoryUsage.rss()) }
  sampleRss()
  const rssTimer = setInterval(sampleRss, RSS_EVERY_MS)
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })

  const children: ChildProcess[] = []
  let app: Awaited<ReturnType<typeof buildApp>> | undefined
  const cleanup = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill()
    rmSync(dataDir, { recursive: true, force: true })
  }
  process.once('SIGINT', () => {
    cleanup()
    process.exit(130)
  })

  try {
    app = await buildApp(config)
    await app.listen({ host: config.host, port: config.port })
    const addr = app.server.address()
    if (addr === null || typeof addr === 'string') throw new Error('no TCP address')
    const base = `http://127.0.0.1:${addr.port}`
    sampleRss()
    console.log(`server ${base}  DATA_DIR=${dataDir}  EXPORT_JOB_SIZE=${fmt(config.exportJobSize)}  EXPORT_WORKERS=${config.exportWorkers}  node ${process.version}`)

    // Firm, user and a second token (for the probes) through the admin API, over HTTP.
    const adminHeaders = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }
    const firmRes = await fetch(`${base}/api/v1/admin/firms/${FIRM}`, { method: 'PUT', headers: adminHeaders, body: JSON.stringify({ name: 'Bench Corp' }) })
    if (firmRes.status !== 201 && firmRes.status !== 200) throw new Error(`putFirm: ${firmRes.status} ${await firmRes.text()}`)
    const userRes = await fetch(`${base}/api/v1/admin/users`, { method: 'POST', headers: adminHeaders, body: JSON.stringify({ name: 'bench client', firms: [FIRM] }) })
    const user = await userRes.json() as { userId?: string, token?: string }
    if (userRes.status !== 201 || !user.token || !user.userId) throw new Error(`createUser: ${userRes.status} ${JSON.stringify(user)}`)
    const tokenRes = await fetch(`${base}/api/v1/admin/users/${user.userId}/tokens`, { method: 'POST', headers: { authorization: adminHeaders.authorization } })
    const probeToken = await tokenRes.json() as { token?: string }
    if (tokenRes.status !== 201 || !probeToken.token) throw new Error(`createUserToken: ${tokenRes.status} ${JSON.stringify(probeToken)}`)

    // Seed: deterministic SCIM-like users, random-order ids, 10k per transaction.
    phase = 'seed'
    const store = createObjectsStore(app.store)
    let insertMs = 0
    let docBytes = 0
    const seed0 = performance.now()
    for (const rows of objectBatches(makeUser, 1, objects, SEED_BATCH)) {
      for (const row of rows) docBytes += row.doc.length
      const i0 = performance.now()
      store.upsertObjects(FIRM, TYPE, rows, Date.now())
      insertMs += performance.now() - i0
      await new Promise((resolve) => setImmediate(resolve)) // let the RSS sampler run
    }
    const seedMs = performance.now() - seed0
    const stored = store.countObjects(FIRM, TYPE)
    if (stored !== objects) throw new Error(`seeded ${stored} objects, expected ${objects}`)
    const dbBytes = statSync(join(dataDir, DB_FILE)).size
    console.log(`seeded ${fmt(objects)} users (avg ${fmt(objects ? docBytes / objects : 0)} B) in ${(seedMs / 1000).toFixed(1)} s: ` +
      `${fmt(objects / (seedMs / 1000))} obj/s overall, ${fmt(objects / (insertMs / 1000))} obj/s in upsertObjects; db ${fmt(mb(dbBytes))} MB`)
    phase = 'idle'
    sampleRss()

    // The clients.
    const spawnChild = (role: string): ChildProcess => {
      const child = fork(fileURLToPath(import.meta.url), [], {
        env: { ...process.env, [ROLE_ENV]: role },
        execArgv: process.execArgv,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      children.push(child)
      return child
    }
    const chainChild = spawnChild('chain')
    const probeChild = probes > 0 ? spawnChild('probe') : null
    const send = (child: ChildProcess | null, m: ToChild): void => { if (child?.connected) child.send(m) }
    let serverUsage: (() => Usage) | null = null
    let serverUsageResult: Usage = { cpuMs: 0, wallMs: 0, elu: 0 }
    let machine: (() => number) | null = null
    let machineCores = Number.NaN
    const load = { before: loadavg()[0], after: Number.NaN }

    const probeResult: Promise<ProbeResult | null> = probeChild
      ? new Promise((resolve, reject) => {
        probeChild.on('message', (m: ToParent) => {
          if (m.type === 'probeResult') resolve(m.result)
          if (m.type === 'error') reject(new Error(`probe client failed: ${m.message}`))
        })
        probeChild.on('exit', (code) => reject(new Error(`probe client exited (${code}) before reporting`)))
      })
      : Promise.resolve(null)
    probeResult.catch(() => {}) // observed below
    send(probeChild, { type: 'init', probe: { base, token: probeToken.token, probes } })

    const chain = await new Promise<ChainResult>((resolve, reject) => {
      chainChild.on('message', (m: ToParent) => {
        if (m.type === 'chainStart') {
          phase = 'chain'
          sampleRss()
          loopDelay.enable()
          serverUsage = usageMeter()
          machine = machineMeter()
          load.before = loadavg()[0]
          send(probeChild, { type: 'chainStart' })
          // Give the probe loops a moment to open their connections.
          setTimeout(() => send(chainChild, { type: 'go' }), probeChild ? 300 : 0)
        } else if (m.type === 'jobStarted') {
          send(probeChild, m)
        } else if (m.type === 'page') {
          const pg = m.page
          console.log(`page ${m.index}: ${fmt(pg.total)} objects, job ${fmt(pg.jobMs)} ms (${fmt(pg.total / (pg.jobMs / 1000))} obj/s), ` +
            `download ${fmt(pg.downloadMs)} ms, ${fmt(mb(pg.bytes), 1)} MB, nextCursor ${pg.nextCursorNull ? 'null' : 'set'}`)
        } else if (m.type === 'chainEnd') {
          loopDelay.disable()
          if (serverUsage) serverUsageResult = serverUsage()
          if (machine) machineCores = machine()
          load.after = loadavg()[0]
          sampleRss()
          phase = 'after'
          // Stop the probes, wait for their report, then let the client run the gzip test.
          send(probeChild, { type: 'stop', windows: m.windows, chainFrom: m.chainFrom, chainTo: m.chainTo })
          probeResult.then(() => send(chainChild, { type: 'go' }), reject)
        } else if (m.type === 'chainResult') {
          resolve(m.result)
        } else if (m.type === 'error') {
          reject(new Error(`chain client failed: ${m.message}`))
        }
      })
      chainChild.on('exit', (code) => reject(new Error(`chain client exited (${code}) before reporting`)))
      send(chainChild, { type: 'init', chain: { base, token: user.token!, firmId: FIRM, objectType: TYPE } })
    })
    const probe = await probeResult
    clearInterval(rssTimer)
    sampleRss()

    const rows = app.store.sqlite.prepare<[], { id: string, createdAt: number, startedAt: number, finishedAt: number }>(
      'SELECT id, created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt FROM export_jobs').all()
    const ld = loopDelay.count > 0
      ? {
          p50: Math.max(0, loopDelay.percentile(50) / 1e6 - LOOP_DELAY_RESOLUTION_MS),
          p99: Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_DELAY_RESOLUTION_MS),
          max: Math.max(0, loopDelay.max / 1e6 - LOOP_DELAY_RESOLUTION_MS),
        }
      : null
    report({
      objects, jobSize, probes, exportWorkers: config.exportWorkers, seedMs, insertMs, docBytes, dbBytes,
      chain, probe, jobs: new Map(rows.map((r) => [r.id, r])), peakRss, loopDelay: ld, serverUsage: serverUsageResult,
      machineCores, load,
    })
  } finally {
    clearInterval(rssTimer)
    if (app) await app.close()
    cleanup()
  }
}

function report (r: ServerMeasures): void {
  const { chain, probe } = r
  const ms = (v: number): string => Number.isFinite(v) ? v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) : '–'
  const out: string[] = []
  out.push('', `### Export benchmark: ${fmt(r.objects)} objects, job size ${fmt(r.jobSize)}, EXPORT_WORKERS=${r.exportWorkers}, ${r.probes} probe loops`, '')
  out.push('| page | objects | job ms (polled) | queue ms | worker ms | obj/s (job) | download ms | MB | download MB/s |')
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  let workerSum = 0
  chain.pages.forEach((pg, i) => {
    const row = r.jobs.get(pg.requestId)
    const queue = row ? row.startedAt - row.createdAt : Number.NaN
    const worker = row ? row.finishedAt - row.startedAt : Number.NaN
    if (row) workerSum += worker
    out.push(`| ${i + 1} | ${fmt(pg.total)} | ${fmt(pg.jobMs)} | ${fmt(queue)} | ${fmt(worker)} | ${fmt(pg.total / (pg.jobMs / 1000))} | ${fmt(pg.downloadMs)} | ${fmt(mb(pg.bytes), 1)} | ${fmt(mb(pg.bytes) / (pg.downloadMs / 1000))} |`)
  })
  const jobSum = chain.pages.reduce((s, p) => s + p.jobMs, 0)
  const dlSum = chain.pages.reduce((s, p) => s + p.downloadMs, 0)
  const chainMs = chain.chainTo - chain.chainFrom

  out.push('', '| metric | value |', '|---|---:|')
  out.push(`| seeding: generate + upsertObjects (10k/txn) | ${fmt(r.objects / (r.seedMs / 1000))} obj/s (${(r.seedMs / 1000).toFixed(1)} s) |`)
  out.push(`| seeding: upsertObjects only | ${fmt(r.objects / (r.insertMs / 1000))} obj/s (${(r.insertMs / 1000).toFixed(1)} s); avg doc ${fmt(r.objects ? r.docBytes / r.objects : 0)} B, db ${fmt(mb(r.dbBytes))} MB |`)
  out.push(`| end to end, first POST → last byte of last file | ${(chainMs / 1000).toFixed(2)} s |`)
  out.push(`| end to end objects/s | **${fmt(chain.lines / (chainMs / 1000))}** |`)
  out.push(`| end to end MB/s | ${fmt(mb(chain.bytes) / (chainMs / 1000), 1)} (${fmt(mb(chain.bytes), 1)} MB) |`)
  out.push(`| Σ job (polled) / Σ worker (DB started→finished) / Σ download | ${(jobSum / 1000).toFixed(2)} s / ${(workerSum / 1000).toFixed(2)} s / ${(dlSum / 1000).toFixed(2)} s |`)
  out.push(`| objects/s in the worker (Σ objects / Σ worker time) | ${fmt(chain.lines / (workerSum / 1000))} |`)
  const lat = (name: string, s: LatencyStats | undefined): void => {
    if (!s) return
    const errs = Object.entries(s.errors).map(([k, v]) => `${v}×${k}`).join(' ')
    out.push(`| ${name} | n=${fmt(s.count)}${errs ? ` (errors: ${errs})` : ''}, ${fmt(s.perSecond)} req/s, p50 ${ms(s.p50)} ms, p99 ${ms(s.p99)} ms, max ${ms(s.max)} ms |`)
  }
  lat('status poll latency while jobs run', probe?.statusDuringJobs)
  lat('status poll latency, whole chain (incl. downloads)', probe?.statusWholeChain)
  lat('/healthz latency while jobs run', probe?.healthDuringJobs)
  if (r.loopDelay) out.push(`| server event-loop delay during the chain | p50 ${ms(r.loopDelay.p50)} ms, p99 ${ms(r.loopDelay.p99)} ms, max ${ms(r.loopDelay.max)} ms |`)
  const cores = (u: Usage): string => `${(u.cpuMs / u.wallMs).toFixed(2)} cores, main-loop ELU ${(u.elu * 100).toFixed(0)} %`
  out.push(`| CPU during the chain: server / chain client / probe client | ${cores(r.serverUsage)} / ${cores(chain.usage)} / ${probe ? cores(probe.usage) : '–'} |`)
  const ours = (r.serverUsage.cpuMs + chain.usage.cpuMs + (probe?.usage.cpuMs ?? 0)) / r.serverUsage.wallMs
  out.push(`| machine during the chain (${availableParallelism()} CPUs): busy cores all processes / other processes; 1-min load before → after | ${r.machineCores.toFixed(2)} / ${(r.machineCores - ours).toFixed(2)}; ${r.load.before.toFixed(2)} → ${r.load.after.toFixed(2)} |`)
  const peak = (k: string): string => r.peakRss[k] ? `${fmt(r.peakRss[k] / 2 ** 20)} MiB` : '–'
  out.push(`| server peak RSS: app started / seeding / idle after seeding / export chain | ${peak('start')} / ${peak('seed')} / ${peak('idle')} / **${peak('chain')}** |`)
  if (chain.gzip) {
    const g = chain.gzip
    out.push(`| page 1 download, plain (idle server) | ${fmt(g.plainMs)} ms, ${fmt(mb(g.plainBytes), 1)} MB, ${fmt(mb(g.plainBytes) / (g.plainMs / 1000))} MB/s |`)
    out.push(`| page 1 download, Accept-Encoding: gzip | ${fmt(g.ms)} ms, ${fmt(mb(g.compressedBytes), 1)} MB on the wire (${(g.expectedBytes / g.compressedBytes).toFixed(2)}:1, Content-Encoding: ${g.encoding}), ${fmt(mb(g.expectedBytes) / (g.ms / 1000))} MB/s of NDJSON |`)
  }

  const checks: Array<[string, boolean, string]> = [
    ['lines == objects seeded', chain.lines === r.objects, `${fmt(chain.lines)} / ${fmt(r.objects)}`],
    ['ids strictly increasing across the chain', chain.outOfOrder === 0 && chain.unparsed === 0, `${chain.outOfOrder} out of order, ${chain.unparsed} unparsed`],
    ['each page: lines == total, bytes == result.bytes, ends with \\n', chain.pages.every((p) => p.lines === p.total && p.bytes === p.reportedBytes && p.endsWithNewline), `${chain.pages.length} pages`],
    ['no empty page (unless the collection is empty)', chain.pages.every((p) => p.total > 0 || r.objects === 0), ''],
    ['last nextCursor null, and only the last', chain.lastCursorNull && chain.pages.every((p, i) => p.nextCursorNull === (i === chain.pages.length - 1)), ''],
    ['page count == ceil(objects / job size)', chain.pages.length === Math.max(1, Math.ceil(r.objects / r.jobSize)), `${chain.pages.length}`],
    ['probe requests all answered 200', !probe || [probe.statusWholeChain, probe.healthDuringJobs].every((s) => Object.keys(s.errors).length === 0), ''],
  ]
  if (chain.gzip) {
    checks.push(['gzip download is gzip and inflates to the file', chain.gzip.encoding === 'gzip' && chain.gzip.decompressedBytes === chain.gzip.expectedBytes, `Content-Encoding: ${chain.gzip.encoding}, ${fmt(chain.gzip.decompressedBytes)} B`])
  }
  out.push('', '| check | result | detail |', '|---|---|---|')
  for (const [name, ok, detail] of checks) out.push(`| ${name} | ${ok ? 'OK' : '**FAIL**'} | ${detail} |`)
  console.log(out.join('\n'))
  if (checks.some(([, ok]) => !ok)) process.exitCode = 1
}

const role = process.env[ROLE_ENV]
if (role === 'chain' || role === 'probe') await childMain(role)
else await serverMain()
