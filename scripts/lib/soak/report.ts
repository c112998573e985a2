/** The soak's report: the metrics table, the chains that went wrong, and one RESULT line. */
import { availableParallelism } from 'node:os'
import { fmt, ms } from '../format.js'
import { summarize } from '../samples.js'
import type { ServerLog } from '../server-process.js'
import type { ChainEnd, ChainOutcome } from './chain.js'
import type { UserState } from './context.js'
import type { Kind, Traffic } from './traffic.js'

/** What the soak measured. */
export interface SoakMeasures {
  seconds: number
  pollers: number
  objects: number
  jobSize: number
  wallMs: number
  traffic: Traffic
  chains: ChainOutcome[]
  users: UserState[]
  serverCores: number
  clientCores: number
  peakRss: number
  serverLog: ServerLog
  stop: { ms: number, clean: boolean, how: string }
  /** The soak client's own event-loop delay, ms. */
  loopDelay: { p50: number, p99: number, max: number }
}

/** Prints the report; true when the soak passed (no error, no 5xx, every chain exact, a clean stop). */
export function report (r: SoakMeasures): boolean {
  const { traffic, chains, users } = r
  const totalRequests = [...traffic.requests.values()].reduce((a, b) => a + b, 0)
  const errors = traffic.errorCount()
  const st = summarize(traffic.statusLatency.sorted())
  const hz = summarize(traffic.healthLatency.sorted())
  const by = (e: ChainEnd): ChainOutcome[] => chains.filter((c) => c.end === e)
  const exact = by('exact')
  const inexact = by('inexact')
  const failed = by('failed')
  const abandoned = by('abandoned')
  const chainMs = exact.map((c) => c.ms).sort((a, b) => a - b)
  const mapText = (m: Map<string, number>): string => [...m].map(([k, v]) => `${v}× ${k}`).join(', ') || '0'
  const reqText = (['status', 'healthz', 'start', 'chainPoll', 'download', 'cancel'] as Kind[])
    .map((k) => `${k} ${fmt(traffic.requests.get(k) ?? 0)}`).join(', ')
  const { serverLog, stop, loopDelay } = r

  const out: string[] = []
  out.push('', `### Soak: ${r.seconds} s, ${r.pollers} pollers, ${users.length} users running export chains of ${fmt(r.objects)} objects (job size ${fmt(r.jobSize)})`, '')
  out.push('| metric | value |', '|---|---:|')
  out.push(`| duration | ${(r.wallMs / 1000).toFixed(1)} s |`)
  out.push(`| requests | ${fmt(totalRequests)} (${reqText}) |`)
  out.push(`| TCP connections opened (${r.pollers} pollers with one each, the chains share a pool) | ${fmt(traffic.connections)} |`)
  out.push(`| requests/s | ${fmt(totalRequests / (r.wallMs / 1000))} |`)
  out.push(`| errors (network + unexpected status + progress decreasing) | **${errors}**${errors ? ` (network: ${mapText(traffic.network)}; unexpected: ${mapText(traffic.unexpected)}; progress decreased: ${traffic.progressDecreased})` : ''} |`)
  out.push(`| 5xx | **${traffic.fiveXx}** |`)
  out.push(`| 429 (rate limited, not counted as errors) | ${mapText(traffic.tooMany)} |`)
  out.push(`| status poll latency (pollers), n=${fmt(st.count)} | p50 ${ms(st.p50)} ms, p99 **${ms(st.p99)}** ms, max ${ms(st.max)} ms (at t=${fmt(traffic.slowestStatus.at, 1)} s) |`)
  out.push(`| /healthz latency, n=${fmt(hz.count)} | p50 ${ms(hz.p50)} ms, p99 ${ms(hz.p99)} ms, max ${ms(hz.max)} ms |`)
  out.push(`| export chains completed and exact | **${exact.length}** (${users.map((u) => `user ${u.n}: ${exact.filter((c) => c.user === u.n).length}`).join(', ')}); ` +
    `chain time p50 ${fmt((chainMs[Math.floor(chainMs.length / 2)] ?? Number.NaN) / 1000, 1)} s, max ${fmt((chainMs[chainMs.length - 1] ?? Number.NaN) / 1000, 1)} s |`)
  out.push(`| chains inexact / failed / abandoned at the deadline | ${inexact.length} / ${failed.length} / ${abandoned.length} |`)
  out.push(`| objects exported and verified (exact chains) | ${fmt(exact.reduce((s, c) => s + c.lines, 0))} |`)
  out.push(`| CPU during the soak (${availableParallelism()} CPUs): server / soak client | ${fmt(r.serverCores, 2)} / ${fmt(r.clientCores, 2)} cores |`)
  out.push(`| server peak RSS | ${r.peakRss ? `${fmt(r.peakRss / 2 ** 20)} MiB` : '–'} |`)
  out.push(`| server log lines: warn / error+ / other | ${serverLog.warn} / ${serverLog.error} / ${serverLog.other} |`)
  out.push(`| server stop | ${stop.how} in ${fmt(stop.ms)} ms |`)
  out.push(`| soak client event-loop delay (its own lag inflates latencies) | p50 ${ms(loopDelay.p50)} ms, p99 ${ms(loopDelay.p99)} ms, max ${ms(loopDelay.max)} ms |`)
  console.log(out.join('\n'))
  const bad = [...inexact, ...failed]
  for (const c of bad.slice(0, 10)) console.log(`chain of user ${c.user} ${c.end} after ${c.pages} pages: ${c.problems.join('; ') || '(see errors)'}`)
  if (bad.length > 10) console.log(`… and ${bad.length - 10} more inexact or failed chains`)
  if (traffic.samples.length) console.log(`\nfirst errors:\n  ${traffic.samples.join('\n  ')}`)
  if (serverLog.samples.length) console.log(`\nserver output:\n  ${serverLog.samples.join('\n  ')}`)

  const reasons: string[] = []
  if (errors) reasons.push(`${errors} errors`)
  if (traffic.fiveXx) reasons.push(`${traffic.fiveXx} 5xx`)
  if (inexact.length) reasons.push(`${inexact.length} inexact chains`)
  if (failed.length) reasons.push(`${failed.length} failed chains`)
  if (exact.length === 0) reasons.push('no chain completed')
  if (serverLog.error) reasons.push(`${serverLog.error} server log lines at level error`)
  if (!stop.clean) reasons.push(`the server did not stop cleanly (${stop.how})`)
  console.log(`\nRESULT: ${reasons.length ? `FAIL (${reasons.join(', ')})` : 'PASS (0 errors, 0 5xx, every chain exact)'}`)
  return reasons.length === 0
}
