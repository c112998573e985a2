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
 * a forked chain client (scripts/lib/bench-export/chain-client.ts) runs the export chain
 * and the downloads; a forked probe client (…/probe-client.ts) runs the latency loops
 * with its own token. All share this machine's CPUs. Everything lives in a temporary
 * directory that is removed at the end.
 */
import { statSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { DB_FILE } from '../src/store/sqlite/connection.js'
import type { SqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { adminClient } from './lib/api-client.js'
import { parseFlags } from './lib/args.js'
import type { ChainIn, ChainOut, ChainResult } from './lib/bench-export/chain-client.js'
import type { ProbeIn, ProbeResult } from './lib/bench-export/probe-client.js'
import { report } from './lib/bench-export/report.js'
import { runBenchServer } from './lib/bench-server.js'
import { makeUser, objectBatches } from './lib/demo-data.js'
import { fmt, mb } from './lib/format.js'
import { forkChild } from './lib/ipc.js'
import { loopDelayMeter, machineMeter, usageMeter, type Usage } from './lib/meters.js'

const FIRM = 'bench'
const TYPE = 'users'
const SEED_BATCH = 10_000
const RSS_EVERY_MS = 200

const { objects, 'job-size': jobSize, probes } = parseFlags(
  'usage: npx tsx scripts/bench-export.ts [--objects N (1000000)] [--job-size N (100000)] [--probes N status/healthz loops (10; 0 = none)]',
  { whole: { objects: { min: 0, default: 1_000_000 }, 'job-size': { min: 1, default: 100_000 }, probes: { min: 0, default: 10 } } }
)

// Peak RSS of this process (the server: main thread + export worker threads), by phase.
let phase = 'start'
const peakRss: Record<string, number> = {}
const sampleRss = (): void => { peakRss[phase] = Math.max(peakRss[phase] ?? 0, process.memoryUsage.rss()) }
sampleRss()
const rssTimer = setInterval(sampleRss, RSS_EVERY_MS)
const loopDelay = loopDelayMeter()

// The per-token rate limits are raised: this measures capacity, not the limiter's policy.
const env = { EXPORT_JOB_SIZE: String(jobSize), RATE_LIMIT_POLLS_PER_MINUTE: '1000000', RATE_LIMIT_STARTS_PER_MINUTE: '1000000' }
try {
  await runBenchServer('bench-export', env, async ({ app, config, base, dataDir, adminToken, adopt }) => {
    sampleRss()
    console.log(`server ${base.origin}  DATA_DIR=${dataDir}  EXPORT_JOB_SIZE=${fmt(config.exportJobSize)}  EXPORT_WORKERS=${config.exportWorkers}  node ${process.version}`)

    // Firm, user and a second token (for the probes) through the admin API, over HTTP.
    const admin = adminClient(base, adminToken)
    await admin.putFirm(FIRM, 'Bench Corp')
    const user = await admin.createUser('bench client', [FIRM])
    const probeToken = await admin.issueToken(user.userId)

    // Seed: deterministic SCIM-like users, random-order ids, 10k per transaction.
    phase = 'seed'
    let insertMs = 0
    let docBytes = 0
    const seed0 = performance.now()
    for (const rows of objectBatches(makeUser, 1, objects, SEED_BATCH)) {
      for (const row of rows) docBytes += row.doc.length
      const i0 = performance.now()
      await app.store.objects.upsertObjects(FIRM, TYPE, rows, Date.now())
      insertMs += performance.now() - i0
      await new Promise((resolve) => setImmediate(resolve)) // let the RSS sampler run
    }
    const seedMs = performance.now() - seed0
    const stored = await app.store.objects.countObjects(FIRM, TYPE)
    if (stored !== objects) throw new Error(`seeded ${stored} objects, expected ${objects}`)
    const dbBytes = statSync(join(dataDir, DB_FILE)).size
    console.log(`seeded ${fmt(objects)} users (avg ${fmt(objects ? docBytes / objects : 0)} B) in ${(seedMs / 1000).toFixed(1)} s: ` +
      `${fmt(objects / (seedMs / 1000))} obj/s overall, ${fmt(objects / (insertMs / 1000))} obj/s in upsertObjects; db ${fmt(mb(dbBytes))} MB`)
    phase = 'idle'
    sampleRss()

    // The clients.
    const chainChild = forkChild<ChainIn, ChainOut, ChainResult>(new URL('./lib/bench-export/chain-client.ts', import.meta.url), 'chain client')
    adopt(chainChild)
    const probeChild = probes > 0 ? forkChild<ProbeIn, never, ProbeResult>(new URL('./lib/bench-export/probe-client.ts', import.meta.url), 'probe client') : null
    if (probeChild) adopt(probeChild)
    let serverUsage: (() => Usage) | null = null
    let serverUsageResult: Usage = { cpuMs: 0, wallMs: 0, elu: 0 }
    let machine: (() => number) | null = null
    let machineCores = Number.NaN
    const load = { before: loadavg()[0], after: Number.NaN }

    const probeResult: Promise<ProbeResult | null> = probeChild ? probeChild.result : Promise.resolve(null)
    probeChild?.send({ type: 'init', params: { base: base.origin, token: probeToken, probes } })

    // The chain client paces the run; this side starts and stops the meters around it.
    chainChild.on((m) => {
      if (m.type === 'chainStart') {
        phase = 'chain'
        sampleRss()
        loopDelay.enable()
        serverUsage = usageMeter()
        machine = machineMeter()
        load.before = loadavg()[0]
        probeChild?.send({ type: 'chainStart' })
        // Give the probe loops a moment to open their connections.
        setTimeout(() => chainChild.send({ type: 'go' }), probeChild ? 300 : 0)
      } else if (m.type === 'jobStarted') {
        probeChild?.send(m)
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
        probeChild?.send({ type: 'stop', windows: m.windows, chainFrom: m.chainFrom, chainTo: m.chainTo })
        probeResult.then(() => chainChild.send({ type: 'go' }), () => {}) // a failure is reported below
      }
    })
    chainChild.send({ type: 'init', params: { base: base.origin, token: user.token, firmId: FIRM, objectType: TYPE } })
    const [chain, probe] = await Promise.all([chainChild.result, probeResult])
    clearInterval(rssTimer)
    sampleRss()

    const rows = (app.store as SqliteStore).connection.sqlite.prepare<[], { id: string, createdAt: number, startedAt: number, finishedAt: number }>(
      'SELECT id, created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt FROM export_jobs').all()
    report({
      objects,
      jobSize,
      probes,
      exportWorkers: config.exportWorkers,
      seedMs,
      insertMs,
      docBytes,
      dbBytes,
      chain,
      probe,
      jobs: new Map(rows.map((r) => [r.id, r])),
      peakRss,
      loopDelay: loopDelay.count > 0 ? loopDelay.delays() : null,
      serverUsage: serverUsageResult,
      machineCores,
      load,
    })
  })
} finally {
  clearInterval(rssTimer)
}
