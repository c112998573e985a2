/**
 * The export benchmark's probe client, a process of its own (forked by
 * scripts/bench-export.ts): closed loops of status polls (of the chain's current request,
 * with a token of its own) and /healthz on keep-alive connections, each latency sorted
 * afterwards into "while a job runs" and "during the whole chain".
 */
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from '../http.js'
import { runChild, type ChildIo } from '../ipc.js'
import { assertLocal } from '../local-url.js'
import { usageMeter, type Usage } from '../meters.js'
import { Samples, summarize } from '../samples.js'
import { nowMs } from './clock.js'

/** What the server tells the probe client. */
export interface ProbeParams { base: string, token: string, probes: number }

/** Latencies of the answered (200) requests in a window, and the others by status. */
export interface LatencyStats { count: number, errors: Record<string, number>, perSecond: number, p50: number, p99: number, max: number }

/** Everything the probe client measured. */
export interface ProbeResult {
  statusDuringJobs: LatencyStats
  statusWholeChain: LatencyStats
  healthDuringJobs: LatencyStats
  usage: Usage
}

/** Server → probe client; `chainStart` and `jobStarted` are relayed from the chain client. */
export type ProbeIn =
  | { type: 'init', params: ProbeParams }
  | { type: 'chainStart' }
  | { type: 'jobStarted', requestId: string }
  | { type: 'stop', windows: Array<[number, number]>, chainFrom: number, chainTo: number }

/** One kind of probe: when each request started, its latency and its status (0: network error). */
interface Series { start: Samples, lat: Samples, code: Samples }
const series = (): Series => ({ start: new Samples(), lat: new Samples(), code: new Samples() })

async function runProbes (io: ChildIo<ProbeIn, never>): Promise<ProbeResult> {
  const p = (await io.next('init')).params
  const auth = { authorization: `Bearer ${p.token}` }
  const base = assertLocal(p.base)
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, p.probes) })
  let requestId: string | null = null
  // Flipped by the stop message while the loops run.
  const stopped = new AbortController()
  let usage: (() => Usage) | null = null
  io.on((m) => {
    if (m.type === 'jobStarted') requestId = m.requestId
    if (m.type === 'chainStart') usage = usageMeter()
  })
  const kinds = { status: series(), health: series() }
  // Each loop alternates a status poll (of the chain's current request) and /healthz.
  const loops = Array.from({ length: p.probes }, async (_, i) => {
    let k = i
    while (!stopped.signal.aborted) {
      const id: string | null = requestId
      const isStatus = id !== null && k++ % 2 === 0
      const url = new URL(isStatus ? `/api/v1/request/${id}` : '/healthz', base)
      const t0 = nowMs()
      let code = 0
      try {
        code = (await request(url, { agent, headers: isStatus ? auth : {} })).status
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
  stopped.abort()
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
  return {
    statusDuringJobs: stats(kinds.status, inJobs, jobSeconds),
    statusWholeChain: stats(kinds.status, inChain, (chainTo - chainFrom) / 1000),
    healthDuringJobs: stats(kinds.health, inJobs, jobSeconds),
    usage: usageResult,
  }
}

function stats (kind: Series, inWindow: (t: number) => boolean, seconds: number): LatencyStats {
  const picked: number[] = []
  const errors: Record<string, number> = {}
  for (let i = 0; i < kind.lat.length; i++) {
    if (!inWindow(kind.start.at(i))) continue
    const code = kind.code.at(i)
    const key = code === 0 ? 'network' : String(code)
    if (code === 200) picked.push(kind.lat.at(i))
    else errors[key] = (errors[key] ?? 0) + 1
  }
  const { count, p50, p99, max } = summarize(Float64Array.from(picked).sort())
  return { count, errors, perSecond: seconds > 0 ? count / seconds : 0, p50, p99, max }
}

await runChild(runProbes)
