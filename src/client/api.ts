import createClient from 'openapi-fetch'
import { problemError } from './errors.js'
import { DEFAULT_RETRY, retryingFetch, type RetryPolicy } from './retry.js'
import type { components, paths } from './schema.js'

export type RequestStatus = components['schemas']['RequestStatus']
export type RequestList = components['schemas']['RequestList']
export type CollectionList = components['schemas']['CollectionList']

/** How to reach a server. */
export interface ConnectOptions {
  /** The server's base URL, e.g. `https://export.example.com`. */
  baseUrl: string
  /** A user token (`bes_…`). */
  token: string
  retry?: Partial<RetryPolicy>
  /** The fetch to build on (tests, proxies); the global one by default. */
  fetch?: typeof fetch
}

/**
 * The typed HTTP client of the whole API (openapi-fetch over the spec's types), with
 * the user's token and retries of network errors, 429 and 5xx built in.
 */
export function createApi (options: ConnectOptions) {
  const policy = { ...DEFAULT_RETRY, ...options.retry }
  return createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    headers: { authorization: `Bearer ${options.token}` },
    fetch: retryingFetch(policy, options.fetch ?? globalThis.fetch),
  })
}

export type Api = ReturnType<typeof createApi>

/** The data of an answer, or its problem as a BulkExportError. */
export function unwrap<T> (what: string, answer: { data?: T, error?: unknown, response: Response }): T {
  if (answer.data !== undefined && answer.response.ok) return answer.data
  throw problemError(answer.response.status, answer.error, what)
}
