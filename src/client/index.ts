import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createApi, unwrap, type ConnectOptions, type RequestStatus } from './api.js'
import { readObjects } from './objects.js'
import { exportPages, type Page, type PagesOptions, type Progress } from './pages.js'
import { DEFAULT_RETRY } from './retry.js'

export type { CollectionList, ConnectOptions, RequestList, RequestStatus } from './api.js'
export { BulkExportError } from './errors.js'
export type { Page, PagesOptions, Progress } from './pages.js'

/** What `exportAll` takes: a collection, and where to start. */
export interface ExportAllOptions {
  firmId: string
  objectType: string
  /** Resume from a saved cursor (a page's nextCursor). */
  cursor?: string | null
  signal?: AbortSignal
  onProgress?: (progress: Progress) => void
  /**
   * Where verified pages wait to be read (deleted once read): up to two pages' worth of
   * disk; the OS temp dir by default (mind a tmpfs /tmp with large pages).
   */
  tmpDir?: string
}

/**
 * A client of a bulk export server: the typed API (`api`, openapi-fetch over the spec)
 * and the workflow on top of it, which owns the protocol: starts, long-polls, 409s,
 * retries, resumable verified downloads and cursors.
 */
export function createBulkExportClient (options: ConnectOptions & { stallMs?: number }) {
  const api = createApi(options)
  const policy = { ...DEFAULT_RETRY, ...options.retry }
  // Downloads retry and resume on their own (Range), so they take the plain fetch.
  const deps = { api, policy, stallMs: options.stallMs ?? 30_000, fetch: options.fetch ?? globalThis.fetch }

  return {
    api,

    /** Every page of a collection as a verified NDJSON file in `dir`, pipelined. */
    exportPages: (opts: PagesOptions) => exportPages(deps, opts),

    /**
     * Every object of a collection, in id order, each exactly once: a streaming parse of
     * verified pages, in constant memory; the next page is exported and downloaded while
     * this one is read. Objects are parsed with JSON.parse (a number beyond 2^53 loses
     * digits): for the exact bytes, read the files of `exportPages`.
     */
    async * exportAll (opts: ExportAllOptions): AsyncGenerator<Record<string, unknown>> {
      const dir = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'bulk-export-'))
      // Stopping early also stops the page read ahead (and cancels the job started for it).
      const stop = new AbortController()
      const onAbort = (): void => stop.abort(opts.signal?.reason)
      if (opts.signal?.aborted) onAbort()
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      const pages = exportPages(deps, { ...opts, dir, signal: stop.signal })
      let next: Promise<IteratorResult<Page>> | undefined
      try {
        next = pages.next()
        for (;;) {
          const { value: page, done } = await next
          if (done) return
          // Read ahead: the following page is started and fetched while this one is read.
          next = pages.next()
          next.catch(() => {})
          yield * readObjects(page.path)
          await rm(page.path, { force: true })
        }
      } finally {
        opts.signal?.removeEventListener('abort', onAbort)
        stop.abort()
        await next?.catch(() => {})
        await pages.return(undefined)
        await rm(dir, { recursive: true, force: true })
      }
    },

    /** One request's status (`waitSeconds`: long-poll up to that long). */
    getRequest: async (requestId: string, waitSeconds = 0): Promise<RequestStatus> => unwrap('read the request status',
      await api.GET('/api/v1/request/{requestId}', { params: { path: { requestId }, header: waitSeconds ? { Prefer: `wait=${waitSeconds}` } : {} } })),

    /** The caller's requests, newest first. */
    listRequests: async (query: { status?: RequestStatus['status'][], firmId?: string, objectType?: string, limit?: number, cursor?: string } = {}) =>
      unwrap('list requests', await api.GET('/api/v1/requests', {
        params: { query: { ...query, limit: query.limit === undefined ? undefined : String(query.limit) } },
      })),

    /** Cancels a running request (or deletes a finished one's file). */
    cancelRequest: async (requestId: string): Promise<RequestStatus> =>
      unwrap('cancel the request', await api.DELETE('/api/v1/request/{requestId}', { params: { path: { requestId } } })),

    /** A firm's collections with their object counts. */
    listCollections: async (firmId: string) =>
      unwrap('list collections', await api.GET('/api/v1/idm/{firmId}/collections', { params: { path: { firmId } } })),
  }
}

export type BulkExportClient = ReturnType<typeof createBulkExportClient>
