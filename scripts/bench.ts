/**
 * `npm run bench` (= npm run build && tsx scripts/bench.ts) [--objects N] [--page N] [--seconds N]
 *
 * The performance figures of the product, each next to a baseline measured in the same
 * run on the same machine, as one table. Self-contained: it generates its data in a
 * temporary directory, starts the real server (`dist/server.js` as `npm start` runs it, its own process, so
 * its memory is its own) on a temporary DATA_DIR, and removes everything at the end.
 *
 *  1. import: 100,000 objects (~600 B, random id order) over HTTP vs a bare prepared
 *     insert into a table of the same kind (interleaved rounds, medians);
 *  2. one 100,000-object page, POST → Completed as a client sees it (long-poll), vs a
 *     bare script reading the same rows in key order and writing NDJSON + fsync;
 *  3. authenticated status reads/s vs the server's /healthz (autocannon, 10 connections);
 *  4. 1,000,000 objects of ~1 KB (~1 GiB) imported in one body, with the server's RSS;
 *     and 1,000,000 of ~350 B;
 *  5. the project's pipelined client pulling each of them end to end (start, long-poll,
 *     download, verify, next), per page, vs the sum of bare page writes;
 *  6. status p99 under autocannon (in a process of its own) while two users' exports run;
 *  7. download MB/s of one page, identity and gzip, and what gzip level 1 costs;
 *  8. the server's peak RSS (all threads) over all of it.
 * Targets (issue 10) are checked at the end; a missed one sets exit code 1.
 */
import autocannon from 'autocannon'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'
import { createGunzip, gzipSync } from 'node:zlib'
import { createBulkExportClient, type BulkExportClient } from '../src/client/index.js'
import { DB_FILE } from '../src/store/sqlite/connection.js'
import { adminClient } from './lib/api-client.js'
import { parseFlags } from './lib/args.js'
import { bareInsert, barePageWrite, loadRows, openBareDb } from './lib/bench/bare.js'
import { writeDataset, type Dataset } from './lib/bench/data.js'
import { rssMeter } from './lib/bench/process-meter.js'
import { printWithChecks, type Check } from './lib/checks-table.js'
import { fmt, mb, MiB, ms } from './lib/format.js'
import { freePort, startServerProcess, waitReady } from './lib/server-process.js'

const FIRM = 'bench'
const ROUNDS = 3
const { objects, page: pageSize, seconds } = parseFlags(
  'usage: npm run bench -- [--objects N (1000000) per large collection] [--page N (100000) objects per job] [--seconds N (5) per load run]',
  { whole: { objects: { min: 1000, default: 1_000_000 }, page: { min: 100, default: 100_000 }, seconds: { min: 1, default: 5 } } }
)
if (!existsSync('dist/server.js')) {
  console.error('dist/server.js is missing: run `npm run build` first (npm run bench does)')
  process.exit(2)
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const s = (msValue: number): string => (msValue / 1000).toFixed(2)
const log = (line: string): void => { console.log(`  ${line}`) }

const work = mkdtempSync(join(tmpdir(), 'bench-'))
const dataDir = join(work, 'data')
const adminToken = `bench-admin-${randomBytes(16).toString('hex')}`
const port = await freePort()
const base = new URL(`http://127.0.0.1:${port}`)
let server: ReturnType<typeof startServerProcess> | undefined
process.once('SIGINT', () => { server?.kill(); rmSync(work, { recursive: true, force: true }); process.exit(130) })

/** Streams an NDJSON file as one import body; ms to the answer. */
function importFile (token: string, type: string, path: string): Promise<{ ms: number, status: number, body: string }> {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(`/api/v1/idm/${FIRM}/${type}/import`, base), {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson', 'content-length': String(statSync(path).size) },
    }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ ms: performance.now() - t0, status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    createReadStream(path).pipe(req)
  })
}

/** One export page from the start of `type`, POST → Completed (long-polled); ms and the final status. */
async function exportOnePage (client: BulkExportClient, type: string) {
  const t0 = performance.now()
  const started = await client.api.POST('/api/v1/idm/{firmId}/{objectType}/export', { params: { path: { firmId: FIRM, objectType: type } }, body: {} })
  if (!started.data) throw new Error(`export start: ${started.response.status} ${JSON.stringify(started.error)}`)
  let view = await client.getRequest(started.data.requestId, 30)
  while (view.status === 'Pending' || view.status === 'InProgress') view = await client.getRequest(view.requestId, 30)
  if (view.status !== 'Completed') throw new Error(`export ${view.requestId}: ${view.status} ${JSON.stringify(view.error)}`)
  return { ms: performance.now() - t0, view }
}

/** Pulls a whole collection with the project's client (pages verified, then deleted); per-page times. */
async function pull (client: BulkExportClient, type: string) {
  const dir = mkdtempSync(join(work, `pull-${type}-`))
  const t0 = performance.now()
  let last = t0
  const pages: Array<{ ms: number, total: number, bytes: number }> = []
  for await (const pg of client.exportPages({ firmId: FIRM, objectType: type, dir })) {
    const now = performance.now()
    pages.push({ ms: now - last, total: pg.total, bytes: pg.bytes })
    last = now
    rmSync(pg.path)
  }
  rmSync(dir, { recursive: true, force: true })
  const total = pages.reduce((n, p) => n + p.total, 0)
  const bytes = pages.reduce((n, p) => n + p.bytes, 0)
  return { ms: performance.now() - t0, pages, total, bytes }
}

/** Every bare page of a collection in turn (keyset from the last id): the floor of a pull. */
function barePull (type: string, expected: number): number {
  const dbPath = join(dataDir, DB_FILE)
  let sum = 0
  let after = ''
  for (let done = 0; done < expected; done += pageSize) {
    const pg = barePageWrite(dbPath, FIRM, type, pageSize, join(work, 'bare-page.ndjson'), after)
    sum += pg.ms
    after = pg.lastId
  }
  return sum
}

/** autocannon against one URL for `seconds`: requests/s and latency percentiles. */
/** What a load run tells: requests/s, latency percentiles, and the answers that were not 2xx. */
function summary (result: autocannon.Result) {
  const bad = result.non2xx + result.errors + result.timeouts
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max, bad, total: result.requests.total }
}

async function load (path: string, token: string | null, connections = 10, duration = seconds) {
  const result = await autocannon({
    url: new URL(path, base).href,
    connections,
    duration,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  })
  return summary(result)
}

/**
 * The same load from autocannon in a process of its own (its CLI, JSON out): for latency
 * while this process is busy pulling, whose event loop would otherwise add to what it measures.
 */
async function loadApart (path: string, token: string, connections: number, duration: number) {
  const bin = join(dirname(fileURLToPath(import.meta.resolve('autocannon/package.json'))), 'autocannon.js')
  const child = spawn(process.execPath, [bin, '--json', '-c', String(connections), '-d', String(duration),
    '-H', `authorization=Bearer ${token}`, new URL(path, base).href], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d: string) => { out += d })
  const [code] = await once(child, 'exit') as [number | null]
  if (code !== 0) throw new Error(`autocannon exited with ${code}`)
  return summary(JSON.parse(out) as autocannon.Result)
}

type Row = [figure: string, ours: string, baseline: string, ratio: string, target: string]
const rows: Row[] = []
const checks: Check[] = []

try {
  console.log(`bench on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; work dir ${work}`)
  console.log('generating data …')
  const t0 = performance.now()
  const small = await writeDataset(join(work, 'small.ndjson'), pageSize, 600, 1)
  const compact = await writeDataset(join(work, 'compact.ndjson'), objects, 350, 2)
  const large = await writeDataset(join(work, 'large.ndjson'), objects, 1075, 3)
  log(`${fmt(small.objects)} × ${fmt(small.avgBytes)} B, ${fmt(compact.objects)} × ${fmt(compact.avgBytes)} B, ${fmt(large.objects)} × ${fmt(large.avgBytes)} B (${fmt(large.bytes / MiB)} MiB) in ${s(performance.now() - t0)} s`)

  server = startServerProcess({
    config: {
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'warn',
      EXPORT_JOB_SIZE: String(pageSize),
      IMPORT_MAX_BYTES: String(Math.max(large.bytes, compact.bytes) + MiB),
      RATE_LIMIT_POLLS_PER_MINUTE: '1000000',
      RATE_LIMIT_STARTS_PER_MINUTE: '1000000',
    },
    dist: true,
    maxLogSamples: 20,
    onUnexpectedExit: (exit) => {
      console.error(`the server exited: ${JSON.stringify(exit)}\n${server?.log.samples.join('\n')}`)
      process.exit(1)
    },
  })
  await waitReady(new URL('/readyz', base), 30_000, () => server?.exit() ? 'the server exited at start-up' : undefined)
  const rss = rssMeter(server.pid as number)
  /** Starts a section of the run: its heading, and a phase of the server's RSS. */
  const section = (name: string, heading: string): void => {
    rss.end()
    rss.phase(name)
    console.log(heading)
  }
  rss.phase('setup')
  const admin = adminClient(base, adminToken)
  await admin.putFirm(FIRM, 'Bench Corp')
  const userA = await admin.createUser('bench A', [FIRM])
  const userB = await admin.createUser('bench B', [FIRM])
  const userP = await admin.createUser('bench probe', [FIRM])
  const clientA = createBulkExportClient({ baseUrl: base.origin, token: userA.token })
  const clientB = createBulkExportClient({ baseUrl: base.origin, token: userB.token })
  const clientP = createBulkExportClient({ baseUrl: base.origin, token: userP.token })
  console.log(`server ${base.origin} (pid ${server.pid}, ${server.args.join(' ')}), pages of ${fmt(pageSize)}`)

  // 1. Import vs bare insert.
  section('import 100k', `import of ${fmt(small.objects)} objects …`)
  const bareDb = openBareDb(join(work, 'bare.sqlite'))
  const smallRows = loadRows(small.path)
  const impOurs: number[] = []
  const impBare: number[] = []
  for (let r = 1; r <= ROUNDS; r++) {
    impBare.push(bareInsert(bareDb, `small-${r}`, smallRows))
    const res = await importFile(userA.token, `small-${r}`, small.path)
    if (res.status !== 200) throw new Error(`import: ${res.status} ${res.body}`)
    impOurs.push(res.ms)
    log(`round ${r}: ours ${s(res.ms)} s, bare ${s(impBare.at(-1) as number)} s`)
  }
  bareDb.close()
  const impRate = small.objects / (median(impOurs) / 1000)
  const bareRate = small.objects / (median(impBare) / 1000)
  rows.push([`import ${fmt(small.objects)} × ${fmt(small.avgBytes)} B, random ids, over HTTP vs bare prepared insert (obj/s)`,
    fmt(impRate), fmt(bareRate), `${fmt(impRate / bareRate * 100)} %`, '≥ 80 %'])
  checks.push(['import ≥ 80 % of a bare insert', impRate / bareRate >= 0.8, `${fmt(impRate / bareRate * 100)} %`])

  // 2. One page vs bare page write.
  section('one page', `one ${fmt(pageSize)}-object page …`)
  const pageOurs: number[] = []
  const pageBare: number[] = []
  barePageWrite(join(dataDir, DB_FILE), FIRM, 'small-1', pageSize, join(work, 'bare-page.ndjson'))
  await exportOnePage(clientA, 'small-1') // warm-up of both
  for (let r = 1; r <= ROUNDS + 2; r++) {
    pageBare.push(barePageWrite(join(dataDir, DB_FILE), FIRM, 'small-1', pageSize, join(work, 'bare-page.ndjson')).ms)
    pageOurs.push((await exportOnePage(clientA, 'small-1')).ms)
    log(`round ${r}: ours ${s(pageOurs.at(-1) as number)} s, bare ${s(pageBare.at(-1) as number)} s`)
  }
  const pageRatio = median(pageOurs) / median(pageBare)
  rows.push([`one ${fmt(pageSize)}-object page (${fmt(mb(small.bytes))} MB), POST → Completed seen by a client vs bare read + NDJSON + fsync`,
    `${s(median(pageOurs))} s`, `${s(median(pageBare))} s`, `${pageRatio.toFixed(2)}×`, '≤ 1.10×'])
  checks.push(['page ≤ 1.10× a bare page write', pageRatio <= 1.1, `${pageRatio.toFixed(2)}×`])

  // 3. Status reads vs /healthz.
  section('status load', `status reads vs /healthz, 10 connections, ${seconds} s each …`)
  const probeJob = await exportOnePage(clientP, 'small-1')
  const statusPath = `/api/v1/request/${probeJob.view.requestId}`
  const health: Array<Awaited<ReturnType<typeof load>>> = []
  const status: Array<Awaited<ReturnType<typeof load>>> = []
  for (let r = 0; r < 2; r++) {
    health.push(await load('/healthz', null))
    status.push(await load(statusPath, userP.token))
    log(`round ${r + 1}: status ${fmt(status[r].rps)} req/s, healthz ${fmt(health[r].rps)} req/s`)
  }
  const statusRps = status.reduce((a, b) => a + b.rps, 0) / status.length
  const healthRps = health.reduce((a, b) => a + b.rps, 0) / health.length
  rows.push(['authenticated status reads/s vs /healthz (autocannon, 10 keep-alive connections)', fmt(statusRps), fmt(healthRps), `${fmt(statusRps / healthRps * 100)} %`, '≥ 50 %'])
  rows.push(['status latency, idle server: p50 / p99', `${ms(status[1].p50)} / ${ms(status[1].p99)} ms`, '', '', ''])
  checks.push(['status reads ≥ 50 % of /healthz', statusRps / healthRps >= 0.5, `${fmt(statusRps / healthRps * 100)} %`])
  checks.push(['every load request answered 2xx', [...health, ...status].every((x) => x.bad === 0), [...health, ...status].map((x) => x.bad).join(', ')])

  // 4. Large imports, with the server's RSS.
  const bigImport = async (ds: Dataset, type: string) => {
    section(`import ${type}`, `import of ${type} …`)
    const res = await importFile(userA.token, type, ds.path)
    const peak = rss.end()
    rss.phase('after imports')
    if (res.status !== 200) throw new Error(`import ${type}: ${res.status} ${res.body}`)
    log(`${type}: ${s(res.ms)} s, ${fmt(ds.objects / (res.ms / 1000))} obj/s, ${fmt(mb(ds.bytes) / (res.ms / 1000), 1)} MB/s, peak RSS ${fmt(peak / MiB)} MiB`)
    return { ms: res.ms, peak }
  }
  const largeImport = await bigImport(large, 'large')
  const compactImport = await bigImport(compact, 'compact')
  rows.push([`import ${fmt(large.objects)} × ${fmt(large.avgBytes)} B (${fmt(large.bytes / MiB)} MiB) in one body`, `${s(largeImport.ms)} s, ${fmt(large.objects / (largeImport.ms / 1000))} obj/s, ${fmt(mb(large.bytes) / (largeImport.ms / 1000), 1)} MB/s`, '', '', ''])
  rows.push(['server peak RSS during that import (all threads)', `${fmt(largeImport.peak / MiB)} MiB`, '', '', '≤ 250 MB'])
  rows.push([`import ${fmt(compact.objects)} × ${fmt(compact.avgBytes)} B in one body`, `${s(compactImport.ms)} s, ${fmt(compact.objects / (compactImport.ms / 1000))} obj/s`, '', '', ''])

  // 5. Pulls by the project's client.
  const pullRow = async (ds: Dataset, type: string) => {
    section(`pull ${type}`, `pull of ${type} …`)
    const floor = barePull(type, ds.objects)
    const got = await pull(clientA, type)
    const perPage = got.pages.map((p) => p.ms)
    log(`${fmt(got.total)} objects in ${s(got.ms)} s: ${fmt(got.total / (got.ms / 1000))} obj/s, ${fmt(mb(got.bytes) / (got.ms / 1000), 1)} MB/s; Σ bare pages ${s(floor)} s; pages ${perPage.map((x) => s(x)).join(' ')}`)
    checks.push([`pull of ${type}: every object once`, got.total === ds.objects && got.bytes === ds.bytes, `${fmt(got.total)} objects, ${fmt(got.bytes)} B`])
    return { ...got, floor, perPage }
  }
  const pc = await pullRow(compact, 'compact')
  const pcRate = pc.total / (pc.ms / 1000)
  rows.push([`client pull of ${fmt(compact.objects)} × ${fmt(compact.avgBytes)} B end to end (obj/s) vs Σ bare page writes`, fmt(pcRate), fmt(pc.total / (pc.floor / 1000)), `${(pc.ms / pc.floor).toFixed(2)}×`, '≥ 150,000 obj/s'])
  checks.push(['client pull ≥ 150k obj/s (~350 B)', pcRate >= 150_000, fmt(pcRate)])
  const pl = await pullRow(large, 'large')
  const plMbs = mb(pl.bytes) / (pl.ms / 1000)
  rows.push([`client pull of ${fmt(large.objects)} × ${fmt(large.avgBytes)} B end to end (MB/s verified NDJSON) vs Σ bare page writes`, fmt(plMbs, 1), fmt(mb(pl.bytes) / (pl.floor / 1000), 1), `${(pl.ms / pl.floor).toFixed(2)}×`, '≥ 100 MB/s'])
  checks.push(['client pull ≥ 100 MB/s (~1 KB)', plMbs >= 100, fmt(plMbs, 1)])
  const flat = (p: number[]): string => {
    const inner = p.slice(1, -1) // the first page has no pipeline ahead of it, the last may be short
    if (inner.length < 4) return 'too few pages'
    const half = Math.floor(inner.length / 2)
    return `${(median(inner.slice(half)) / median(inner.slice(0, half))).toFixed(2)}×`
  }
  rows.push(['per-page time, later half vs first half of each chain (flat = 1.00×)', `${flat(pc.perPage)} / ${flat(pl.perPage)}`, '', '', ''])

  // 6. Status under load while two users export.
  section('two exports', 'status p99 while two exports run …')
  const loading = loadApart(statusPath, userP.token, 10, Math.max(seconds, Math.ceil(pc.ms / 1000)))
  const [two] = await Promise.all([loading, pull(clientA, 'compact'), pull(clientB, 'compact')])
  checks.push(['every status read during the exports answered 2xx', two.bad === 0, String(two.bad)])
  rows.push(['status while two exports run (autocannon in its own process, 10 connections): p50 / p99 / max', `${ms(two.p50)} / **${ms(two.p99)}** / ${ms(two.max)} ms`, '', `${fmt(two.rps)} req/s`, 'p99 ≤ 10 ms'])
  checks.push(['status p99 ≤ 10 ms while two exports run', two.p99 <= 10, `${ms(two.p99)} ms`])

  // 7. Downloads.
  section('downloads', 'downloads …')
  const one = await exportOnePage(clientA, 'large')
  const fileUrl = one.view.result?.fileUrl as string
  // node:http, not fetch: fetch decompresses by itself and hides the wire bytes.
  const download = (gzip: boolean) => new Promise<{ ms: number, wire: number, plain: number }>((resolve, reject) => {
    const t = performance.now()
    httpRequest(fileUrl, { headers: { 'accept-encoding': gzip ? 'gzip' : 'identity' } }, (res) => {
      let wire = 0
      let plain = 0
      res.on('data', (c: Buffer) => { wire += c.length })
      const count = new Writable({ write (chunk: Buffer, _e, cb) { plain += chunk.length; cb() } })
      const done = res.headers['content-encoding'] === 'gzip' ? pipeline(res, createGunzip(), count) : pipeline(res, count)
      done.then(() => resolve({ ms: performance.now() - t, wire, plain }), reject)
    }).on('error', reject).end()
  })
  const ident = await download(false)
  const gz = await download(true)
  const pageBytes = one.view.result?.bytes as number
  rows.push([`download of one page (${fmt(mb(pageBytes))} MB), identity / gzip, MB/s of NDJSON`, `${fmt(mb(ident.plain) / (ident.ms / 1000))} / ${fmt(mb(gz.plain) / (gz.ms / 1000))}`, '', `gzip ${(gz.plain / gz.wire).toFixed(1)}:1`, ''])
  const page = Buffer.from(await (await fetch(fileUrl, { headers: { 'accept-encoding': 'identity' } })).arrayBuffer())
  const gz0 = performance.now()
  const packed = gzipSync(page, { level: 1 })
  const gzMs = performance.now() - gz0
  rows.push(['gzip level 1 of that page in one thread (what gzip at rest would add to each page write)', `${s(gzMs)} s (${fmt(mb(pageBytes) / (gzMs / 1000))} MB/s)`, `page write ${s(one.ms)} s`, `+${fmt(gzMs / one.ms * 100)} %`, ''])
  checks.push(['downloads are whole', ident.plain === pageBytes && gz.plain === pageBytes && packed.length > 0, `${fmt(ident.plain)} / ${fmt(gz.plain)} of ${fmt(pageBytes)} B`])

  // 8. Memory over the whole run.
  rss.end()
  const allPeak = Math.max(...rss.peaks().values())
  rss.stop()
  rows.push(['server peak RSS by part of the run (MiB)', [...rss.peaks()].map(([k, v]) => `${k} ${fmt(v / MiB)}`).join(', '), '', '', ''])
  rows.push(['server peak RSS (all threads) over the whole run: imports, exports, downloads', `${fmt(allPeak / MiB)} MiB (${fmt(mb(allPeak))} MB)`, '', '', '≤ 250 MB'])
  checks.push(['server peak RSS ≤ 250 MB', allPeak <= 250e6, `${fmt(mb(allPeak))} MB`])
  const stop = await server.stop(30_000)
  checks.push(['the server stopped cleanly, no error logged', stop.clean && server.log.error === 0, `${stop.how}, ${server.log.error} errors, ${server.log.warn} warnings`])

  const out = ['', `### Benchmark (${cpus().length} cores, node ${process.version}, pages of ${fmt(pageSize)}; medians of interleaved rounds)`, '',
    '| figure | ours | baseline (same run) | ratio | target |', '|---|---:|---:|---:|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`)]
  printWithChecks(out, checks)
} finally {
  server?.kill()
  rmSync(work, { recursive: true, force: true })
}
