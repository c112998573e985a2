/** The export benchmark's report: the page table, the metrics table and the checks. */
import { availableParallelism } from 'node:os'
import { printWithChecks, type Check } from '../checks-table.js'
import { fmt, mb, ms } from '../format.js'
import type { Usage } from '../meters.js'
import type { ChainResult } from './chain-client.js'
import type { LatencyStats, ProbeResult } from './probe-client.js'

/** What the server side measured, with the clients' results. */
export interface ServerMeasures {
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

/** Prints the report as Markdown tables; a failed check sets exit code 1. */
export function report (r: ServerMeasures): void {
  const { chain, probe } = r
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

  const checks: Check[] = [
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
  printWithChecks(out, checks)
}
