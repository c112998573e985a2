/**
 * `npx tsx scripts/bench-import.ts [--objects N]`
 *
 * End-to-end benchmark of the NDJSON import through the real application and HTTP:
 *  1. starts buildApp() on a temporary DATA_DIR (127.0.0.1, port 0, LOG_LEVEL=warn) and
 *     creates a firm and a user through the admin API;
 *  2. a forked client generates N SCIM-like users (~900 bytes each, random-order ids) on
 *     the fly and streams them as one chunked NDJSON body (no Content-Length, nothing
 *     held in memory beyond one 256 KiB chunk) to POST …/import, honouring back-pressure;
 *  3. this process (the server alone) samples its RSS every 250 ms and reports it at each
 *     tenth of the body, so a flat line shows that memory does not grow with the body;
 *  4. prints objects/s, MB/s and the peak RSS, and checks the answer and the database.
 *
 * The default, 1,000,000 objects, is a body of about 0.9 GB. Everything lives in a
 * temporary directory that is removed at the end.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { DB_FILE } from '../src/store/db.js'
import { makeUser, prng } from './demo-data.js'

const FIRM = 'bench'
const TYPE = 'users'
const RSS_EVERY_MS = 250
const LOOP_DELAY_RESOLUTION_MS = 10
const CHUNK_BYTES = 256 * 1024
const PROGRESS_STEPS = 10
const ROLE_ENV = 'BENCH_IMPORT_ROLE'
const GiB = 2 ** 30
const MiB = 2 ** 20

interface ClientParams { port: number, token: string, objects: number }

interface ClientResult {
  status: number
  body: string
  objects: number
  bytes: number
  /** First byte written → last byte written. */
  sendMs: number
  /** First byte written → response complete (includes the final merge). */
  totalMs: number
  /** Time the client spent generating and serializing objects. */
  generateMs: number
}

type ToParent =
  | { type: 'progress', objects: number, bytes: number, ms: number }
  | { type: 'result', result: ClientResult }
  | { type: 'error', message: string }

type ToChild = { type: 'init', params: ClientParams }

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

// ---------------------------------------------------------------------------------------
// Client (forked child): generates and streams the body

async function runClient ({ port, token, objects }: ClientParams, send: (m: ToParent) => void): Promise<ClientResult> {
  const rand = prng(20240601)
  const req = http.request({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: `/api/v1/idm/${FIRM}/${TYPE}/import`,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
  })
  const response = new Promise<{ status: number, body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  let answered = false
  response.then(() => { answered = true }, () => { answered = true })

  const t0 = performance.now()
  const step = Math.max(1, Math.ceil(objects / PROGRESS_STEPS))
  let bytes = 0
  let parts: string[] = []
  let partBytes = 0
  const flush = async (): Promise<void> => {
    const chunk = Buffer.from(parts.join(''), 'utf8')
    parts = []
    partBytes = 0
    bytes += chunk.length
    if (!req.write(chunk)) await Promise.race([once(req, 'drain'), response])
  }
  let generateMs = 0
  for (let n = 0; n < objects && !answered; n++) {
    const g0 = performance.now()
    const line = JSON.stringify(makeUser(rand, n)) + '\n'
    generateMs += performance.now() - g0
    parts.push(line)
    partBytes += line.length // close enough to bytes for chunking: names are mostly ASCII
    if (partBytes >= CHUNK_BYTES) await flush()
    if ((n + 1) % step === 0 && n + 1 < objects) send({ type: 'progress', objects: n + 1, bytes: bytes + partBytes, ms: performance.now() - t0 })
  }
  if (parts.length && !answered) await flush()
  req.end()
  const sendMs = performance.now() - t0
  const res = await response
  return { ...res, objects, bytes, sendMs, totalMs: performance.now() - t0, generateMs }
}

async function childMain (): Promise<void> {
  const send = (m: ToParent): void => { process.send?.(m) }
  const init = await new Promise<ToChild>((resolve) => process.once('message', resolve))
  try {
    send({ type: 'result', result: await runClient(init.params, send) })
  } catch (err) {
    send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  }
  process.disconnect?.()
}

// ---------------------------------------------------------------------------------------
// Server side (this process): the app, RSS sampling, the report

async function serverMain (): Promise<void> {
  const { values } = parseArgs({
    options: {
      objects: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  })
  if (values.help) {
    console.log('usage: npx tsx scripts/bench-import.ts [--objects N (1000000)]')
    return
  }
  const objects = values.objects === undefined ? 1_000_000 : Number(values.objects.replace(/[_,]/g, ''))
  if (!Number.isSafeInteger(objects) || objects < 1) {
    console.error(`--objects must be a whole number ≥ 1 (got ${JSON.stringify(values.objects)})`)
    process.exit(2)
  }

  const dataDir = mkdtempSync(join(tmpdir(), 'bench-import-'))
  const adminToken = `bench-admin-${randomBytes(16).toString('hex')}`
  // The default body limit (1 GiB) holds the default run; larger runs raise it.
  const importMaxBytes = Math.max(GiB, objects * 1024)
  const config = loadConfig({
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'warn',
    ADMIN_TOKEN: adminToken,
    IMPORT_MAX_BYTES: String(importMaxBytes),
  })

  let child: ChildProcess | undefined
  let app: Awaited<ReturnType<typeof buildApp>> | undefined
  const cleanup = (): void => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill()
    rmSync(dataDir, { recursive: true, force: true })
  }
  process.once('SIGINT', () => {
    cleanup()
    process.exit(130)
  })

  let peakRss = 0
  let lastRss = 0
  let atPeak = process.memoryUsage()
  const sampleRss = (): void => {
    const usage = process.memoryUsage()
    lastRss = usage.rss
    if (lastRss > peakRss) {
      peakRss = lastRss
      atPeak = usage
    }
  }
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
  // The histogram measures the sampling timer itself; what exceeds its period is delay.
  const delay = (ns: number): number => Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS)
  let rssTimer: NodeJS.Timeout | undefined
  try {
    app = await buildApp(config)
    await app.listen({ host: config.host, port: 0 })
    const port = (app.server.address() as { port: number }).port
    const admin = { authorization: `Bearer ${adminToken}` }
    const firm = await app.inject({ method: 'PUT', url: `/api/v1/admin/firms/${FIRM}`, headers: admin })
    if (firm.statusCode >= 300) throw new Error(`putFirm: ${firm.statusCode} ${firm.body}`)
    const user = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name: 'bench', firms: [FIRM] } })
    if (user.statusCode !== 201) throw new Error(`createUser: ${user.statusCode} ${user.body}`)
    const token = user.json().token as string

    sampleRss()
    const baselineRss = lastRss
    peakRss = baselineRss
    rssTimer = setInterval(sampleRss, RSS_EVERY_MS)
    loopDelay.enable()
    console.log(`importing ${fmt(objects)} SCIM-like users as one streamed NDJSON body (IMPORT_MAX_BYTES ${fmt(importMaxBytes)}); server RSS at start ${fmt(baselineRss / MiB)} MiB`)
    console.log('')
    console.log('| body sent | objects | MB | s | server RSS MiB (now) | server RSS MiB (peak so far) |')
    console.log('|---:|---:|---:|---:|---:|---:|')

    child = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, [ROLE_ENV]: 'client' },
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    const started = child
    const result = await new Promise<ClientResult>((resolve, reject) => {
      started.on('message', (m: ToParent) => {
        if (m.type === 'progress') {
          sampleRss()
          console.log(`| ${Math.round((m.objects / objects) * 100)} % | ${fmt(m.objects)} | ${fmt(m.bytes / 1e6)} | ${(m.ms / 1000).toFixed(1)} | ${fmt(lastRss / MiB)} | ${fmt(peakRss / MiB)} |`)
        } else if (m.type === 'result') {
          resolve(m.result)
        } else if (m.type === 'error') {
          reject(new Error(`client failed: ${m.message}`))
        }
      })
      started.on('exit', (code) => reject(new Error(`client exited (${code}) before reporting`)))
      started.send({ type: 'init', params: { port, token, objects } } satisfies ToChild)
    })
    clearInterval(rssTimer)
    loopDelay.disable()
    sampleRss()
    console.log(`| 100 % | ${fmt(result.objects)} | ${fmt(result.bytes / 1e6)} | ${(result.totalMs / 1000).toFixed(1)} | ${fmt(lastRss / MiB)} | ${fmt(peakRss / MiB)} |`)

    // The merge of the staged rows runs in one transaction on the event loop, where the
    // 250 ms sampler cannot see it; the kernel's high-water mark covers it.
    const maxRss = process.resourceUsage().maxRSS * 1024
    const count = (app.store.sqlite.prepare('SELECT count(*) AS n FROM objects WHERE firm_id = ? AND type = ?').get(FIRM, TYPE) as { n: number }).n
    const staged = (app.store.sqlite.prepare('SELECT count(*) AS n FROM import_rows').get() as { n: number }).n
    const dbBytes = statSync(join(dataDir, DB_FILE)).size
    let imported: number | undefined
    try {
      imported = (JSON.parse(result.body) as { imported?: number }).imported
    } catch {}

    const seconds = result.totalMs / 1000
    const out: string[] = ['', `### Import benchmark: ${fmt(objects)} objects, ${fmt(result.bytes / 1e6)} MB body (${fmt(result.bytes / GiB, 2)} GiB), avg ${fmt(result.bytes / objects)} B/object`, '']
    out.push('| metric | value |', '|---|---:|')
    out.push(`| end to end, first byte sent → response | ${seconds.toFixed(1)} s |`)
    out.push(`| objects/s | **${fmt(objects / seconds)}** |`)
    out.push(`| MB/s (10^6 bytes) | **${fmt(result.bytes / 1e6 / seconds, 1)}** |`)
    out.push(`| body upload (first → last byte written) | ${(result.sendMs / 1000).toFixed(1)} s (${fmt(result.bytes / 1e6 / (result.sendMs / 1000), 1)} MB/s), of which the client generated objects for ${(result.generateMs / 1000).toFixed(1)} s |`)
    out.push(`| last byte written → response (final merge) | ${((result.totalMs - result.sendMs) / 1000).toFixed(1)} s |`)
    out.push(`| server RSS before the import | ${fmt(baselineRss / MiB)} MiB |`)
    out.push(`| server peak RSS, sampled every ${RSS_EVERY_MS} ms | **${fmt(peakRss / MiB)} MiB** (+${fmt((peakRss - baselineRss) / MiB)} MiB) |`)
    out.push(`| server peak RSS, kernel high-water mark (incl. the merge) | ${fmt(maxRss / MiB)} MiB |`)
    out.push(`| at the sampled peak: V8 heap used / external (Buffers) | ${fmt(atPeak.heapUsed / MiB)} MiB / ${fmt(atPeak.external / MiB)} MiB |`)
    out.push(`| server event-loop delay during the import: p50 / p99 / max | ${fmt(delay(loopDelay.percentile(50)))} / ${fmt(delay(loopDelay.percentile(99)))} / ${fmt(delay(loopDelay.max))} ms |`)
    out.push(`| database file after the import | ${fmt(dbBytes / 1e6)} MB |`)

    const checks: Array<[string, boolean, string]> = [
      ['HTTP 200', result.status === 200, result.status === 200 ? '200' : `${result.status} ${result.body.slice(0, 200)}`],
      ['imported == objects sent', imported === objects, `${imported === undefined ? '–' : fmt(imported)} / ${fmt(objects)}`],
      ['rows in objects == objects sent', count === objects, fmt(count)],
      ['staging table empty afterwards', staged === 0, fmt(staged)],
      ['peak RSS below 1/4 of the body', peakRss - baselineRss < result.bytes / 4 || result.bytes < 256 * MiB, `+${fmt((peakRss - baselineRss) / MiB)} MiB for ${fmt(result.bytes / MiB)} MiB`],
    ]
    out.push('', '| check | result | detail |', '|---|---|---|')
    for (const [name, ok, detail] of checks) out.push(`| ${name} | ${ok ? 'OK' : '**FAIL**'} | ${detail} |`)
    console.log(out.join('\n'))
    if (checks.some(([, ok]) => !ok)) process.exitCode = 1
  } finally {
    if (rssTimer) clearInterval(rssTimer)
    if (app) await app.close()
    cleanup()
  }
}

if (process.env[ROLE_ENV] === 'client') await childMain()
else await serverMain()
