import { setTimeout as sleep } from 'node:timers/promises'

/** How hard the client keeps trying before it gives up on a request. */
export interface RetryPolicy {
  /** Attempts at most, the first included (default 40)… */
  attempts: number
  /** …within this long from the first (default 10 minutes: a server restart or a network blip is ridden out). */
  budgetMs: number
  /** The first pause, in ms (default 250); each next one doubles… */
  baseMs: number
  /** …up to this (default 15,000). */
  maxMs: number
  /** How long one attempt may take before it counts as lost (default 75 s: a long-poll holds 30 s). */
  timeoutMs: number
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 40, budgetMs: 10 * 60_000, baseMs: 250, maxMs: 15_000, timeoutMs: 75_000 }

/** Statuses that say "try again later": too many requests, and the server's own faults. */
export function retryableStatus (status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505)
}

/** Seconds of a Retry-After header (delta-seconds or an HTTP date), as ms. */
export function retryAfterMs (header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined
  if (/^\d+$/.test(header.trim())) return Number(header) * 1000
  const at = Date.parse(header)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/**
 * The pause before attempt `attempt + 1`: capped exponential backoff with full jitter,
 * and never shorter than what the server asked for with Retry-After.
 */
export function backoffMs (policy: RetryPolicy, attempt: number, retryAfter?: string | null): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1))
  const jittered = Math.random() * cap
  return Math.max(jittered, retryAfterMs(retryAfter) ?? 0)
}

/** Waits `ms`, or rejects at once when `signal` aborts. */
export async function pause (ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal })
}

/** Whether the policy allows another attempt after `attempt`, begun at `startedAt`. */
export function mayRetry (policy: RetryPolicy, attempt: number, startedAt: number): boolean {
  return attempt < policy.attempts && Date.now() - startedAt < policy.budgetMs
}

/**
 * Whether a request can be sent again without doing twice what it does: reads, the
 * idempotent PUT and DELETE, and a POST that carries an Idempotency-Key (the client's
 * export starts). Anything else (creating a user, an import) is sent once.
 */
function repeatable (method: string, headers: Headers): boolean {
  return ['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'].includes(method) || (method === 'POST' && headers.has('idempotency-key'))
}

/**
 * A fetch that retries network errors, lost attempts (`timeoutMs`), 429 and 5xx
 * (Retry-After honoured) with capped exponential backoff and jitter, within the policy's
 * attempts and time budget; only requests that can be repeated safely are retried.
 */
export function retryingFetch (policy: RetryPolicy = DEFAULT_RETRY, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const request = input instanceof Request && init === undefined ? input : new Request(input, init)
    const signal = request.signal
    if (!repeatable(request.method, request.headers)) return base(request)
    const startedAt = Date.now()
    for (let attempt = 1; ; attempt++) {
      let response: Response
      try {
        response = await base(request.clone(), { signal: AbortSignal.any([signal, AbortSignal.timeout(policy.timeoutMs)]) })
      } catch (err) {
        if (signal.aborted || !mayRetry(policy, attempt, startedAt)) throw err
        await pause(backoffMs(policy, attempt), signal)
        continue
      }
      if (!retryableStatus(response.status) || !mayRetry(policy, attempt, startedAt)) return response
      // The body of an answer that is retried is not read: free it.
      await response.body?.cancel().catch(() => {})
      await pause(backoffMs(policy, attempt, response.headers.get('retry-after')), signal)
    }
  }
}
