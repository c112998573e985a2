/**
 * The server under test, over HTTP only. Every request goes to its origin: a Location
 * or fileUrl pointing elsewhere is a failure, and is not fetched.
 */
import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fetchJson, type JsonReply } from '../http.js'
import { LineSplitter, lineId } from '../ndjson-lines.js'
import { check, finish, note } from './checks.js'

/** A finished job as `waitFor` saw it. */
export interface Completed { requestId: string, status: any, jobSecs: number, polls: number }

/** One downloaded file, checked line by line against what was imported. */
export interface Download { lines: number, bytes: number, sha256: string, ids: string[], head: Buffer, tail: Buffer, secs: number, emptyLines: number, endsWithNewline: boolean, mismatched: number, unknown: number, contentType: string | null, contentEncoding: string | null, etag: string | null, status: number }

/** The server at `origin`, its firm and object type under test. */
export class Target {
  /** id → base64 SHA-256 of the exact line bytes that were imported. */
  readonly imported = new Map<string, string>()

  constructor (readonly origin: string, readonly firm: string, readonly type: string) {}

  /** `url` (a path, or absolute) on the server's origin; throws for any other origin. */
  url (url: string): URL {
    const u = new URL(url, this.origin)
    if (u.origin !== this.origin) throw new Error(`refusing to send traffic to ${u.origin} (not ${this.origin})`)
    return u
  }

  /** One API call. */
  call (method: string, path: string, opts: { token?: string | null, body?: unknown, headers?: Record<string, string>, timeoutMs?: number } = {}): Promise<JsonReply> {
    return fetchJson(this.url(path), { method, ...opts })
  }

  /** POST …/export, with `{cursor}` when a cursor (or null) is given, else no body. */
  startExport (token: string, cursor?: string | null): Promise<JsonReply> {
    return this.call('POST', `/api/v1/idm/${this.firm}/${this.type}/export`, { token, body: cursor === undefined ? undefined : { cursor } })
  }

  /** Checks that a start answered with a Location of its request. */
  checkLocation (res: JsonReply, requestId: string, who: string): void {
    const loc = res.headers.get('location')
    let ok = false
    try { ok = loc !== null && this.url(loc).pathname === `/api/v1/request/${requestId}` } catch {}
    check(ok, `${who}: Location header points at /api/v1/request/${requestId}`, { location: loc })
  }

  /** Polls honouring Retry-After until Completed or Failed; checks the polling contract. */
  async waitFor (token: string, requestId: string, t0: number, who: string): Promise<Completed> {
    let lastProcessed = -1
    let polls = 0
    let badRetry = 0
    let decreased = 0
    const seen = new Set<string>()
    for (;;) {
      const r = await this.call('GET', `/api/v1/request/${requestId}`, { token })
      polls++
      if (r.status === 429) {
        const wait = Number(r.headers.get('retry-after') ?? '1')
        note(`${who}: 429 on poll, waiting ${wait}s`)
        await sleep(wait * 1000)
        continue
      }
      if (r.status !== 200) {
        check(false, `${who}: GET status → 200`, { status: r.status, body: r.text.slice(0, 300) })
        finish()
      }
      const s = r.json
      seen.add(s.status)
      const processed = s.progress?.processed
      if (typeof processed !== 'number' || processed < lastProcessed) decreased++
      if (typeof processed === 'number') lastProcessed = Math.max(lastProcessed, processed)
      if (s.status === 'Pending' || s.status === 'InProgress') {
        const ra = r.headers.get('retry-after')
        if (ra === null || !/^\d+$/.test(ra)) {
          badRetry++
          await sleep(1000)
        } else {
          await sleep(Number(ra) * 1000)
        }
        continue
      }
      const jobSecs = (performance.now() - t0) / 1000
      check(badRetry === 0, `${who}: every Pending/InProgress status carried an integer Retry-After (${polls} polls, saw ${[...seen].join('→')})`, { badRetry })
      check(decreased === 0, `${who}: progress.processed never decreased`, { decreased })
      check(s.requestId === requestId && ['Completed', 'Failed'].includes(s.status), `${who}: final status is Completed or Failed`, s)
      return { requestId, status: s, jobSecs, polls }
    }
  }

  /** Streams a file (identity encoding unless `headers` say otherwise), with no Authorization header. */
  async download (fileUrl: string, headers: Record<string, string> = { 'accept-encoding': 'identity' }): Promise<Download> {
    const url = this.url(fileUrl)
    const t0 = performance.now()
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(10 * 60_000) })
    const whole = createHash('sha256')
    const ids: string[] = []
    let lines = 0; let bytes = 0; let emptyLines = 0; let mismatched = 0; let unknown = 0
    let head = Buffer.alloc(0)
    let tail = Buffer.alloc(0)
    const onLine = (line: Buffer): void => {
      if (line.length === 0) { emptyLines++; return }
      lines++
      const id = lineId(line)
      if (id === undefined) { unknown++; return }
      ids.push(id)
      const want = this.imported.get(id)
      if (want === undefined) unknown++
      else if (createHash('sha256').update(line).digest('base64') !== want) mismatched++
    }
    const splitter = new LineSplitter(onLine)
    if (res.body && res.status < 300) {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
        whole.update(buf)
        bytes += buf.length
        // The first MiB and the last 4 KiB, for the Range checks.
        if (head.length < 1 << 20) head = Buffer.concat([head, buf.subarray(0, (1 << 20) - head.length)])
        tail = Buffer.concat([tail, buf]).subarray(-4096)
        splitter.push(buf)
      }
    } else {
      await res.text()
    }
    const rest = splitter.end()
    if (rest) onLine(rest)
    return {
      lines,
      bytes,
      sha256: whole.digest('hex'),
      ids,
      head,
      tail,
      secs: (performance.now() - t0) / 1000,
      emptyLines,
      endsWithNewline: rest === null,
      mismatched,
      unknown,
      status: res.status,
      contentType: res.headers.get('content-type'),
      contentEncoding: res.headers.get('content-encoding'),
      etag: res.headers.get('etag'),
    }
  }
}

/** Checks a Completed status and the shape of its result. */
export function checkResultShape (s: any, who: string): boolean {
  const r = s.result
  let absolute = false
  try { absolute = /^https?:$/.test(new URL(r?.fileUrl).protocol) && /^https?:\/\//.test(r.fileUrl) } catch {}
  return check(s.status === 'Completed' && r && Number.isInteger(r.total) && absolute &&
    (r.nextCursor === null || (typeof r.nextCursor === 'string' && r.nextCursor.length > 0)) &&
    Number.isInteger(r.bytes) && /^[0-9a-f]{64}$/.test(r.sha256) && typeof r.expiresAt === 'string' && s.error === undefined,
  `${who}: Completed with result {total, fileUrl (absolute), nextCursor, bytes, sha256, expiresAt}`, s)
}
