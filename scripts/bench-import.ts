/**
 * `npx tsx scripts/bench-import.ts [--objects N]`
 *
 * End-to-end benchmark of the NDJSON import through the real application and HTTP:
 *  1. starts buildApp() on a temporary DATA_DIR (127.0.0.1, port 0, LOG_LEVEL=warn) and
 *     creates a firm and a user through the admin API;
 *  2. a forked client (scripts/lib/bench-import/import-client.ts) generates N SCIM-like
 *     users (~900 bytes each, random-order ids) on the fly and streams them as one chunked
 *     NDJSON body (no Content-Length, nothing held in memory beyond one 256 KiB chunk) to
 *     POST …/import, honouring back-pressure;
 *  3. this process (the server alone) samples its RSS every 250 ms and reports it at each
 *     tenth of the body, so a flat line shows that memory does not grow with the body;
 *  4. prints objects/s, MB/s and the peak RSS, and checks the answer and the database.
 *
 * The default, 1,000,000 objects, is a body of about 0.9 GB. Everything lives in a
 * temporary directory that is removed at the end.
 */
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { DB_FILE } from '../src/store/sqlite/connection.js'
import type { SqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { adminClient } from './lib/api-client.js'
import { parseFlags } from './lib/args.js'
import type { ImportIn, ImportOut, ImportResult } from './lib/bench-import/import-client.js'
import { runBenchServer } from './lib/bench-server.js'
import { printWithChecks, type Check } from './lib/checks-table.js'
import { fmt, GiB, MiB } from './lib/format.js'
import { forkChild } from './lib/ipc.js'
import { loopDelayMeter } from './lib/meters.js'

const FIRM = 'bench'
const TYPE = 'users'
const RSS_EVERY_MS = 250

const { objects } = parseFlags('usage: npx tsx scripts/bench-import.ts [--objects N (1000000)]', {
  whole: { objects: { min: 1, default: 1_000_000 } },
})

// The default body limit (1 GiB) holds the default run; larger runs raise it.
const importMaxBytes = Math.max(GiB, objects * 1024)

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
const loopDelay = loopDelayMeter()
let rssTimer: NodeJS.Timeout | undefined

try {
  await runBenchServer('bench-import', { IMPORT_MAX_BYTES: String(importMaxBytes) }, async ({ app, base, dataDir, adminToken, adopt }) => {
    const admin = adminClient(base, adminToken)
    await admin.putFirm(FIRM)
    const { token } = await admin.createUser('bench', [FIRM])

    sampleRss()
    const baselineRss = lastRss
    peakRss = baselineRss
    rssTimer = setInterval(sampleRss, RSS_EVERY_MS)
    loopDelay.enable()
    console.log(`importing ${fmt(objects)} SCIM-like users as one streamed NDJSON body (IMPORT_MAX_BYTES ${fmt(importMaxBytes)}); server RSS at start ${fmt(baselineRss / MiB)} MiB`)
    console.log('')
    console.log('| body sent | objects | MB | s | server RSS MiB (now) | server RSS MiB (peak so far) |')
    console.log('|---:|---:|---:|---:|---:|---:|')

    const client = forkChild<ImportIn, ImportOut, ImportResult>(new URL('./lib/bench-import/import-client.ts', import.meta.url), 'client')
    adopt(client)
    client.on((m) => {
      sampleRss()
      console.log(`| ${Math.round((m.objects / objects) * 100)} % | ${fmt(m.objects)} | ${fmt(m.bytes / 1e6)} | ${(m.ms / 1000).toFixed(1)} | ${fmt(lastRss / MiB)} | ${fmt(peakRss / MiB)} |`)
    })
    client.send({ type: 'init', params: { url: new URL(`/api/v1/idm/${FIRM}/${TYPE}/import`, base).href, token, objects } })
    const result = await client.result
    clearInterval(rssTimer)
    loopDelay.disable()
    sampleRss()
    console.log(`| 100 % | ${fmt(result.objects)} | ${fmt(result.bytes / 1e6)} | ${(result.totalMs / 1000).toFixed(1)} | ${fmt(lastRss / MiB)} | ${fmt(peakRss / MiB)} |`)

    // The merge of the staged rows runs in one transaction on the event loop, where the
    // 250 ms sampler cannot see it; the kernel's high-water mark covers it.
    const maxRss = process.resourceUsage().maxRSS * 1024
    const { sqlite } = (app.store as SqliteStore).connection
    const count = (sqlite.prepare('SELECT count(*) AS n FROM objects WHERE firm_id = ? AND type = ?').get(FIRM, TYPE) as { n: number }).n
    const staged = (sqlite.prepare('SELECT count(*) AS n FROM import_rows').get() as { n: number }).n
    const dbBytes = statSync(join(dataDir, DB_FILE)).size
    let imported: number | undefined
    try {
      imported = (JSON.parse(result.body) as { imported?: number }).imported
    } catch {}
    const delays = loopDelay.delays()

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
    out.push(`| server event-loop delay during the import: p50 / p99 / max | ${fmt(delays.p50)} / ${fmt(delays.p99)} / ${fmt(delays.max)} ms |`)
    out.push(`| database file after the import | ${fmt(dbBytes / 1e6)} MB |`)

    const checks: Check[] = [
      ['HTTP 200', result.status === 200, result.status === 200 ? '200' : `${result.status} ${result.body.slice(0, 200)}`],
      ['imported == objects sent', imported === objects, `${imported === undefined ? '–' : fmt(imported)} / ${fmt(objects)}`],
      ['rows in objects == objects sent', count === objects, fmt(count)],
      ['staging table empty afterwards', staged === 0, fmt(staged)],
      ['peak RSS below 1/4 of the body', peakRss - baselineRss < result.bytes / 4 || result.bytes < 256 * MiB, `+${fmt((peakRss - baselineRss) / MiB)} MiB for ${fmt(result.bytes / MiB)} MiB`],
    ]
    printWithChecks(out, checks)
  })
} finally {
  clearInterval(rssTimer)
}
