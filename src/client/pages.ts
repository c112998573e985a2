import { createHash, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { unwrap, type Api, type RequestStatus } from './api.js'
import { downloadVerified } from './download.js'
import { BulkExportError, problemError, type Problem } from './errors.js'
import { backoffMs, pause, retryAfterMs, type RetryPolicy } from './retry.js'

/** Where a pull stands, for progress displays. */
export interface Progress {
  /** The page being exported (1-based). */
  page: number
  requestId: string
  status: RequestStatus['status']
  /** Objects written of this page, and its size once known. */
  processed: number
  total?: number
  /** Objects of finished pages so far in this pull. */
  done: number
  /** About how many objects follow the last finished page (null until one finished). */
  remaining: number | null
  ratePerSecond?: number
  etaSeconds?: number
}

/** One verified page on disk. */
export interface Page {
  index: number
  requestId: string
  /** The cursor the page was exported from (null: the first page). */
  cursor: string | null
  nextCursor: string | null
  /** The verified NDJSON file. */
  path: string
  total: number
  bytes: number
  sha256: string
  remaining?: number
}

export interface PagesOptions {
  firmId: string
  objectType: string
  /** Resume from a saved cursor (a page's nextCursor); none or null from the start. */
  cursor?: string | null
  /** Where page files go; their names are `pageName(index)`. */
  dir: string
  pageName?: (index: number) => string
  /** The index of the first page (when a resumed pull goes on numbering). */
  firstIndex?: number
  /**
   * Names this pull for the server's Idempotency-Key: the same run id and cursor find the
   * same job again (a crashed and restarted pull attaches to what it had started).
   */
  runId?: string
  signal?: AbortSignal
  onProgress?: (progress: Progress) => void
}

interface Deps { api: Api, fetch: typeof fetch, policy: RetryPolicy, stallMs: number }

/** How often a job that failed in a retryable way (write or read fault) is started again. */
const JOB_ATTEMPTS = 5
/** How often a page whose file went away is exported again, and a link refreshed, before giving up. */
const REEXPORTS = 3
const WAIT_SECONDS = 30

const keyOf = (runId: string, firmId: string, objectType: string, cursor: string | null, attempt: number): string =>
  `bes-${runId}-${createHash('sha256').update(JSON.stringify([firmId, objectType, cursor])).digest('hex').slice(0, 32)}-${attempt}`

const jobFailed = (view: RequestStatus): BulkExportError => new BulkExportError(
  `export ${view.requestId} failed: ${view.error?.code} — ${view.error?.message}`, undefined,
  { type: 'urn:bulk-export:job-failed', title: 'Export failed', status: 0, code: view.error?.code as never, detail: view.error?.message })

/**
 * Every page of a collection as a verified file, pipelined: as soon as a page's job
 * completes the next one starts, and the finished page is downloaded while the next is
 * written. Starts attach to the user's active job on a 409 (the same page: adopted;
 * another: waited out); jobs that fail in a retryable way, and pages whose file expired,
 * are exported again (and when the collection changed meanwhile, the chain goes on from
 * where the page now ends); downloads resume and are verified (bytes, SHA-256, lines).
 * Stopping early (a `return`, an abort) cancels the job it had started ahead.
 */
export async function * exportPages (deps: Deps, opts: PagesOptions): AsyncGenerator<Page> {
  const { api, policy } = deps
  const { firmId, objectType } = opts
  const stop = new AbortController()
  const onAbort = (): void => stop.abort(opts.signal?.reason)
  if (opts.signal?.aborted) onAbort()
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  const signal = stop.signal
  const runId = opts.runId ?? randomUUID()
  const runStarted = Date.now()
  const name = opts.pageName ?? ((i: number) => `page-${String(i).padStart(5, '0')}.ndjson`)
  let cursor = opts.cursor ?? null
  let index = opts.firstIndex ?? 1
  let done = 0
  let remaining: number | null = null
  const attempts = new Map<string | null, number>()
  const staleRetried = new Set<string | null>()
  const bump = (at: string | null): number => {
    const attempt = (attempts.get(at) ?? 1) + 1
    attempts.set(at, attempt)
    return attempt
  }

  const status = async (requestId: string, wait: number): Promise<{ view: RequestStatus, held: boolean, retryAfter: string | null }> => {
    const answer = await api.GET('/api/v1/request/{requestId}', {
      params: { path: { requestId }, header: wait ? { Prefer: `wait=${wait}` } : {} },
      signal,
    })
    const { headers } = answer.response
    return { view: unwrap('read the request status', answer), held: headers.has('preference-applied'), retryAfter: headers.get('retry-after') }
  }

  /** Waits for a job to end (long-polls; Retry-After when the server would not hold the read). */
  const finish = async (requestId: string): Promise<RequestStatus> => {
    for (;;) {
      const { view, held, retryAfter } = await status(requestId, WAIT_SECONDS)
      opts.onProgress?.({ page: index, requestId, status: view.status, ...view.progress, done, remaining })
      if (view.status === 'Completed' || view.status === 'Failed') return view
      if (!held) await pause(retryAfterMs(retryAfter) ?? 1000, signal)
    }
  }

  /** Starts the job of a page, or finds the one that already exports it. */
  const start = async (at: string | null): Promise<string> => {
    for (let lost = 1; ; lost++) {
      const answer = await api.POST('/api/v1/idm/{firmId}/{objectType}/export', {
        params: { path: { firmId, objectType }, header: { 'Idempotency-Key': keyOf(runId, firmId, objectType, at, attempts.get(at) ?? 1) } },
        body: { cursor: at },
        signal,
      })
      if (answer.response.status !== 409) return unwrap('start the export', answer).requestId
      const active = (answer.error as Problem).activeRequestId
      if (active) {
        const view = (await status(active, 0)).view
        if (view.firmId === firmId && view.objectType === objectType && view.cursor === at) return active
        // The user's one slot is busy with another export: wait for it, then start ours.
        await finish(active)
      } else if (lost >= 10) {
        throw problemError(409, answer.error, 'start the export')
      } else {
        await pause(backoffMs(policy, lost), signal)
      }
    }
  }

  /** The job of a page, run until its file is there: a retryable failure starts it again. */
  const complete = async (requestId: string, at: string | null): Promise<RequestStatus> => {
    for (;;) {
      const view = await finish(requestId)
      if (view.status === 'Completed') return view
      // A failure an earlier run left (its Idempotency-Key found it again) is not this run's:
      // once per page, it is started afresh (once: the server's clock may run ahead of ours).
      const stale = Date.parse(view.createdAt) < runStarted && !staleRetried.has(at)
      if (stale) staleRetried.add(at)
      const attempt = attempts.get(at) ?? 1
      if (!stale && (!view.error?.retryable || view.error.code === 'CANCELLED' || attempt >= JOB_ATTEMPTS)) throw jobFailed(view)
      bump(at)
      if (!stale) await pause(backoffMs(policy, attempt), signal)
      requestId = await start(at)
    }
  }

  /** Cancels a job started ahead that will not be used (best effort, whatever the signal). */
  const drop = (job: Promise<string> | undefined): void => {
    job?.then((requestId) => api.DELETE('/api/v1/request/{requestId}', { params: { path: { requestId } } }), () => {}).catch(() => {})
  }

  let job: Promise<string> | undefined = start(cursor)
  try {
    while (job) {
      let view = await complete(await job, cursor)
      let nextCursor = view.result?.nextCursor ?? null
      // Pipelined: the next page is written while this one downloads.
      job = nextCursor === null ? undefined : start(nextCursor)
      job?.catch(() => {}) // observed when awaited
      const path = join(opts.dir, name(index))
      for (let refreshed = 0, reexported = 0; ;) {
        const result = view.result!
        if (result.fileUrl !== null) {
          const got = await downloadVerified(result.fileUrl, path, result, { policy, stallMs: deps.stallMs, fetch: deps.fetch, signal })
          if (!got.gone) break
          if (got.gone !== 'file-gone') {
            // A link that expired (or is refused) is read again; one that stays refused is an error.
            if (++refreshed > REEXPORTS) throw new BulkExportError(`the download link of ${view.requestId} is refused (${got.gone}); check PUBLIC_URL and any proxy in between`)
            view = (await status(view.requestId, 0)).view
            continue
          }
        }
        // The file is gone: export this page again (after the next page's job, which holds the slot).
        if (++reexported > REEXPORTS) throw new BulkExportError(`the file of page ${index} went away ${REEXPORTS} times before it could be downloaded; is FILE_TTL_SECONDS very short?`)
        await pause(backoffMs(policy, bump(cursor)), signal)
        view = await complete(await start(cursor), cursor)
        const now = view.result?.nextCursor ?? null
        if (now !== nextCursor) {
          // The collection changed since the page was first written: the next page starts
          // where this one ends now, or objects would be skipped or repeated.
          drop(job)
          nextCursor = now
          job = nextCursor === null ? undefined : start(nextCursor)
          job?.catch(() => {})
        }
      }
      const result = view.result!
      done += result.total
      remaining = result.remaining ?? null
      yield { index, requestId: view.requestId, cursor, nextCursor, path, total: result.total, bytes: result.bytes, sha256: result.sha256, remaining: result.remaining }
      cursor = nextCursor
      index++
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    stop.abort()
    drop(job)
  }
}
