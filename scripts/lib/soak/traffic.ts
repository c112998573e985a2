/**
 * The soak's HTTP client and its counters: every request of the soak goes through
 * `call`, which counts it, times it and records what went wrong. Each poller has its own
 * keep-alive connection, like an independent client; the export chains and downloads
 * share a pool.
 */
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { request, type HttpReply } from '../http.js'
import { Samples } from '../samples.js'

const REQUEST_TIMEOUT_MS = 30_000
/** How many error descriptions and server lines the report quotes. */
export const MAX_SAMPLES = 12

/** What a request was for, as the report breaks them down. */
export type Kind = 'status' | 'healthz' | 'start' | 'chainPoll' | 'download' | 'cancel'

function bump (map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}

/** Everything the soak counted. */
export class Traffic {
  /** Requests of the soak phase (from the first poller to the deadline and the drain). */
  readonly requests = new Map<Kind, number>()
  readonly network = new Map<string, number>()
  readonly unexpected = new Map<string, number>()
  readonly tooMany = new Map<string, number>()
  fiveXx = 0
  progressDecreased = 0
  /** TCP connections opened during the soak phase. */
  connections = 0
  readonly samples: string[] = []
  /** The slowest status poll: when in the soak it started (s) and how long it took (ms). */
  readonly slowestStatus = { at: Number.NaN, ms: 0 }
  readonly statusLatency = new Samples()
  readonly healthLatency = new Samples()
  private soaking = false
  private soakStart = 0
  private readonly pool = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 })
  private readonly agents: http.Agent[] = [this.pool]

  /** The soak phase begins (`t0`, performance.now()) or ends: only its requests are counted. */
  soak (on: boolean, t0 = performance.now()): void {
    this.soaking = on
    if (on) this.soakStart = t0
  }

  /** Keeps a description of an error for the report (the first few only). */
  sample (text: string): void {
    if (this.samples.length < MAX_SAMPLES) this.samples.push(text)
  }

  /** Network errors, unexpected answers and decreasing progress, together. */
  errorCount (): number {
    let n = this.progressDecreased
    for (const v of this.network.values()) n += v
    for (const v of this.unexpected.values()) n += v
    return n
  }

  /** A connection of its own, for one poller. */
  ownConnection (): http.Agent {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    this.agents.push(agent)
    return agent
  }

  /** Closes every connection. */
  destroy (): void {
    for (const a of this.agents) a.destroy()
  }

  /**
   * A counted request: network errors, unexpected statuses (anything not in `expect`),
   * 5xx and 429 are recorded. With `onChunk` the body is streamed to it and not kept.
   * Returns null on a network error.
   */
  async call (kind: Kind, method: string, url: URL, opts: { token?: string, body?: unknown, expect?: number[], onChunk?: (c: Buffer) => void, latency?: Samples, agent?: http.Agent } = {}): Promise<HttpReply | null> {
    const headers: Record<string, string> = {}
    if (opts.token) headers.authorization = `Bearer ${opts.token}`
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    if (this.soaking) this.requests.set(kind, (this.requests.get(kind) ?? 0) + 1)
    const t0 = performance.now()
    let reply: HttpReply
    try {
      reply = await request(url, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        agent: opts.agent ?? this.pool,
        timeoutMs: REQUEST_TIMEOUT_MS,
        keepBody: !opts.onChunk,
        onResponse: opts.onChunk && (() => opts.onChunk),
      })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      bump(this.network, `${kind} ${code}`)
      this.sample(`${kind} ${method} ${url.pathname}: network error ${code}`)
      return null
    }
    if (this.soaking && !reply.reusedSocket) this.connections++
    const took = performance.now() - t0
    opts.latency?.push(took)
    if (kind === 'status' && took > this.slowestStatus.ms) Object.assign(this.slowestStatus, { at: (t0 - this.soakStart) / 1000, ms: took })
    const expect = opts.expect ?? [200]
    if (reply.status === 429) {
      bump(this.tooMany, kind)
    } else if (!expect.includes(reply.status)) {
      if (reply.status >= 500) this.fiveXx++
      bump(this.unexpected, `${kind} ${reply.status}`)
      this.sample(`${kind} ${method} ${url.pathname} → ${reply.status} ${reply.body.subarray(0, 300).toString()}`)
    }
    return reply
  }
}

/** The body as JSON; undefined when it is not. */
export function json<T> (reply: HttpReply): T | undefined {
  try { return JSON.parse(reply.body.toString('utf8')) as T } catch { return undefined }
}

/** Seconds from a Retry-After header, within [1, 60]. */
export function retryAfterMs (reply: HttpReply): number {
  const n = Number(reply.headers['retry-after'])
  return (Number.isFinite(n) ? Math.min(60, Math.max(1, n)) : 1) * 1000
}
