import { randomUUID } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { RequestStatus } from '../../src/contract/generated.js'
import { build } from './build.js'

/**
 * Tests of the workflow poll far faster than a client should; per-token rate limits are
 * the subject of their own tests, so they are lifted here.
 */
export const NO_RATE_LIMITS = { RATE_LIMIT_POLLS_PER_MINUTE: '1000000', RATE_LIMIT_STARTS_PER_MINUTE: '1000000' }

/** `build` for export tests: the real app without rate limits, `env` on top. */
export async function buildExportApp (t: Parameters<typeof build>[0], env: Record<string, string> = {}, options: Parameters<typeof build>[2] = {}) {
  return build(t, { ...NO_RATE_LIMITS, ...env }, options)
}

/** A job's status body, as the contract defines it. */
export type JobStatusBody = RequestStatus

/** The result of a completed job whose file is still there. */
export type LiveResult = NonNullable<RequestStatus['result']> & { fileUrl: string }

/** A completed job's result with its link; throws when the job has none (not Completed, or its file gone). */
export function liveResult (status: JobStatusBody): LiveResult {
  const result = status.result
  if (status.status !== 'Completed' || !result || result.fileUrl === null) throw new Error(`job ${status.requestId} has no file: ${JSON.stringify(status)}`)
  return result as LiveResult
}

/** One status read, as seen while polling. */
export interface Poll { status: string, processed: number, retryAfter: string | undefined }

/** POST export with an optional JSON body (`undefined` sends no body at all). */
export async function postExport (app: FastifyInstance, headers: Record<string, string>, firmId: string, type: string, body?: unknown) {
  return app.inject({
    method: 'POST',
    url: `/api/v1/idm/${firmId}/${type}/export`,
    headers,
    ...(body === undefined ? {} : { payload: body as object }),
  })
}

/** Starts an export and returns its request id; throws on anything but 200. */
export async function startExport (app: FastifyInstance, headers: Record<string, string>, firmId: string, type: string, cursor?: string | null): Promise<string> {
  const res = await postExport(app, headers, firmId, type, cursor === undefined ? undefined : { cursor })
  if (res.statusCode !== 200) throw new Error(`startExport ${firmId}/${type}: ${res.statusCode} ${res.body}`)
  return res.json().requestId
}

/** Reads a request's status through the API. */
export async function readStatus (app: FastifyInstance, headers: Record<string, string>, requestId: string) {
  return app.inject({ url: `/api/v1/request/${requestId}`, headers })
}

/**
 * Polls the status until Completed or Failed, or throws after `timeoutMs`. `polls`
 * receives every answer seen on the way, so callers can check the progression.
 */
export async function waitForJob (app: FastifyInstance, headers: Record<string, string>, requestId: string, options: { timeoutMs?: number, polls?: Poll[] } = {}): Promise<JobStatusBody> {
  // A guard against a hang, not a speed check: a loaded machine runs the (niced) workers slowly.
  const deadline = Date.now() + (options.timeoutMs ?? 120_000)
  for (;;) {
    const res = await readStatus(app, headers, requestId)
    if (res.statusCode !== 200) throw new Error(`getRequest ${requestId}: ${res.statusCode} ${res.body}`)
    const body = res.json() as JobStatusBody
    const retryAfter = res.headers['retry-after'] as string | undefined
    options.polls?.push({ status: body.status, processed: body.progress.processed, retryAfter })
    if (body.status === 'Completed' || body.status === 'Failed') return body
    if (Date.now() > deadline) throw new Error(`job ${requestId} still ${body.status} after ${options.timeoutMs ?? 120_000} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Downloads a fileUrl through inject (its path and query; the origin is ignored). */
export async function downloadFile (app: FastifyInstance, fileUrl: string | null, headers: Record<string, string> = {}) {
  if (fileUrl === null) throw new Error('no fileUrl: the file has expired')
  const url = new URL(fileUrl)
  return app.inject({ url: url.pathname + url.search, headers })
}

/** Start, wait, and (when Completed) download: one page of an export. */
export async function exportPage (app: FastifyInstance, headers: Record<string, string>, firmId: string, type: string, cursor?: string | null) {
  const requestId = await startExport(app, headers, firmId, type, cursor)
  const status = await waitForJob(app, headers, requestId)
  if (status.status !== 'Completed' || !status.result) throw new Error(`job ${requestId} ${status.status}: ${JSON.stringify(status.error)}`)
  const result = liveResult(status)
  const file = await downloadFile(app, result.fileUrl)
  if (file.statusCode !== 200) throw new Error(`download ${result.fileUrl}: ${file.statusCode} ${file.body}`)
  return { requestId, status, result, file: file.rawPayload }
}

/** Follows cursors from none to null; returns every page. Throws past `maxPages`. */
export async function exportChain (app: FastifyInstance, headers: Record<string, string>, firmId: string, type: string, maxPages = 1000) {
  const pages: Array<Awaited<ReturnType<typeof exportPage>>> = []
  let cursor: string | null | undefined
  do {
    if (pages.length >= maxPages) throw new Error(`more than ${maxPages} pages`)
    const page = await exportPage(app, headers, firmId, type, cursor)
    pages.push(page)
    cursor = page.result.nextCursor
  } while (cursor !== null)
  return pages
}

/** The lines of an NDJSON file (without their '\n'); throws if the last line is unterminated. */
export function ndjsonLines (file: Buffer): string[] {
  if (file.length === 0) return []
  const text = file.toString('utf8')
  if (!text.endsWith('\n')) throw new Error('the file does not end with a newline')
  return text.slice(0, -1).split('\n')
}

/** A raw HTTP GET over a real socket (no automatic decompression, no keep-alive). */
export async function httpGet (url: string | null, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }> {
  if (url === null) throw new Error('no URL: the file has expired')
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * GETs `url` as a reader slower than the server: it pauses 1 ms after every chunk, so the
 * socket's buffers fill and the server waits on them. `onFirstBytes` runs when the first arrive.
 */
export async function slowGet (url: string, onFirstBytes: () => void = () => {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.once('data', onFirstBytes)
      res.on('data', (c: Buffer) => {
        chunks.push(c)
        res.pause()
        setTimeout(() => res.resume(), 1)
      })
      res.on('end', () => resolve(Buffer.concat(chunks)))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** How many file descriptors this process has open. */
export const openFds = (): number => readdirSync('/proc/self/fd').length

/** The open file descriptors once they are back to at most `count` (closing is asynchronous), or after 30 s. */
export async function fdsSettled (count: number): Promise<number> {
  for (let waited = 0; openFds() > count && waited < 30_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20))
  return openFds()
}

/** A random UUID-like hex id (random order relative to insertion). */
export function randomId (): string {
  return randomUUID()
}

/** Loads `n` objects of a few hundred bytes with random ids straight into the store. */
export async function seedObjects (app: FastifyInstance, firmId: string, type: string, n: number): Promise<void> {
  const filler = 'x'.repeat(200)
  const rows = Array.from({ length: n }, (_, i) => {
    const id = randomUUID()
    return { id, doc: Buffer.from(JSON.stringify({ id, i, filler })) }
  })
  await app.store.objects.upsertObjects(firmId, type, rows, Date.now())
}
