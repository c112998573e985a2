import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, rename, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { BulkExportError } from './errors.js'
import { backoffMs, mayRetry, pause, retryableStatus, type RetryPolicy } from './retry.js'

/** How many times a whole download may fail its check before it is given up. */
const MAX_MISMATCHES = 3

/** What a page's file must be: from its request's result. */
export interface Expected {
  bytes: number
  sha256: string
  /** Lines (objects) the file holds. */
  total: number
}

/**
 * Why a download could not go on: the link expired (read the status again for a fresh
 * one), the file is gone (export the page again), or the link is refused (403).
 */
export type Gone = 'link-expired' | 'file-gone' | 'forbidden'

/** The file's bytes that are already on disk, hashed and counted (a resumed download goes on from there). */
async function resumePoint (part: string): Promise<{ size: number, hash: Hash, lines: number }> {
  const hash = createHash('sha256')
  let lines = 0
  let size = 0
  try {
    size = (await stat(part)).size
  } catch {
    return { size: 0, hash, lines }
  }
  for await (const chunk of createReadStream(part, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    hash.update(chunk)
    for (let i = chunk.indexOf(0x0a); i !== -1; i = chunk.indexOf(0x0a, i + 1)) lines++
  }
  return { size, hash, lines }
}

/** fsync a file or directory by path. */
async function sync (path: string, flags = 'r'): Promise<void> {
  const handle = await open(path, flags)
  try { await handle.sync() } finally { await handle.close() }
}

/**
 * Downloads a page's file to `path`, whole and verified: it streams to `path.part`,
 * resumes a cut transfer with Range (a stall of `stallMs` counts as a cut), retries
 * network errors and 5xx with backoff, checks bytes, SHA-256 and line count, then fsyncs
 * and renames the file into place. Resolves with `gone` instead when the server says the
 * link expired or the file is gone (a 410 or 403), for the caller to get a new one.
 */
export async function downloadVerified (url: string, path: string, expected: Expected, opts: { policy: RetryPolicy, stallMs: number, fetch: typeof fetch, signal?: AbortSignal }): Promise<{ gone?: Gone }> {
  const part = `${path}.part`
  const startedAt = Date.now()
  let mismatches = 0
  for (let attempt = 1; ; attempt++) {
    opts.signal?.throwIfAborted()
    const at = await resumePoint(part)
    if (at.size > expected.bytes) {
      await rm(part, { force: true })
      continue
    }
    const stall = new AbortController()
    let timer = setTimeout(() => stall.abort(), opts.stallMs)
    const onAbort = (): void => stall.abort()
    // An abort that came while the part file was read fires no event: it is checked here.
    if (opts.signal?.aborted) onAbort()
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    let retryAfter: string | null = null
    try {
      // Range only when something is there already; identity, so that offsets are the file's.
      const headers: Record<string, string> = { 'accept-encoding': 'identity' }
      if (at.size > 0) headers.range = `bytes=${at.size}-`
      const res = await opts.fetch(url, { headers, signal: stall.signal })
      if (res.status === 410) {
        // The server's 410 says which: a problem with `recreate` means the file itself is gone.
        const problem = await res.json().catch(() => ({})) as { recreate?: unknown }
        return { gone: problem.recreate ? 'file-gone' : 'link-expired' }
      }
      if (res.status === 403) {
        await res.body?.cancel().catch(() => {})
        return { gone: 'forbidden' }
      }
      let hash = at.hash
      let lines = at.lines
      if (res.status === 416 && at.size === expected.bytes) {
        // Everything had arrived: only the check and the rename were left.
        await res.body?.cancel().catch(() => {})
      } else if (res.status === 200 || res.status === 206) {
        if (res.status === 200) {
          hash = createHash('sha256')
          lines = 0
        }
        const file = await open(part, res.status === 206 ? 'a' : 'w')
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            clearTimeout(timer)
            timer = setTimeout(() => stall.abort(), opts.stallMs)
            await file.write(chunk)
            hash.update(chunk)
            for (let i = chunk.indexOf(0x0a); i !== -1; i = chunk.indexOf(0x0a, i + 1)) lines++
          }
          await file.sync()
        } finally {
          await file.close()
        }
      } else {
        retryAfter = res.headers.get('retry-after')
        await res.body?.cancel().catch(() => {})
        if (!retryableStatus(res.status)) throw new BulkExportError(`download: ${res.status}`, res.status)
        throw new Error(`download: ${res.status}`)
      }
      const size = (await stat(part)).size
      if (size < expected.bytes) throw new Error(`the download ended after ${size} of ${expected.bytes} bytes`)
      const sha256 = hash.digest('hex')
      if (size !== expected.bytes || sha256 !== expected.sha256 || lines !== expected.total) {
        await rm(part, { force: true })
        // Twice more from scratch; a file that never matches is not the network's doing.
        const Fail = ++mismatches >= MAX_MISMATCHES ? BulkExportError : Error
        throw new Fail(`the downloaded file does not match its request's result (${size} bytes, ${lines} lines, sha256 ${sha256}; expected ${expected.bytes}, ${expected.total}, ${expected.sha256}); downloading it again`)
      }
      await rename(part, path)
      await sync(dirname(path))
      return {}
    } catch (err) {
      if (opts.signal?.aborted) throw err
      const permanent = err instanceof BulkExportError
      if (permanent || !mayRetry(opts.policy, attempt, startedAt)) throw err
      await pause(backoffMs(opts.policy, attempt, retryAfter), opts.signal)
    } finally {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
    }
  }
}
