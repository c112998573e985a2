import { setTimeout as sleep } from 'node:timers/promises'

/** How hard the client keeps trying before it gives up on a request. */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 8). */
  attempts: number
  /** The first pause, in ms (default 250); each next one doubles… */
  baseMs: number
  /** …up to this (default 15,000). */
  maxMs: number
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 8, baseMs: 250, maxMs: 15_000 }

/** Statuses that say "try again later": too many requests, and the server's own faults. */
export function retryableStatus (status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505)
}

/** Seconds of a Retry-After header (delta-seconds or an HTTP date), as ms. */
function retryAfterMs (header: string | null | undefined, now = Date.now()): number | undefined {
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

/**
 * A fetch that retries network errors, 429 and 5xx (Retry-After honoured) with capped
 * exponential backoff and jitter. Requests are retried whatever their method: the
 * client sends an Idempotency-Key with every start, and its other calls are reads.
 */
export function retryingFetch (policy: RetryPolicy = DEFAULT_RETRY, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined)
    for (let attempt = 1; ; attempt++) {
      const request = input instanceof Request ? input.clone() : input
      let response: Response
      try {
        response = await base(request, init)
      } catch (err) {
        if (signal?.aborted || attempt >= policy.attempts) throw err
        await pause(backoffMs(policy, attempt), signal ?? undefined)
        continue
      }
      if (!retryableStatus(response.status) || attempt >= policy.attempts) return response
      // The body of an answer that is retried is not read: free it.
      await response.body?.cancel().catch(() => {})
      await pause(backoffMs(policy, attempt, response.headers.get('retry-after')), signal ?? undefined)
    }
  }
}
