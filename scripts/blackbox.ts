/**
 * `npx tsx scripts/blackbox.ts --base http://127.0.0.1:3000 --admin-token TOKEN [--objects 250000]
 *                              [--job-size N] [--seed 42]`
 *
 * Black-box check of a running server, over HTTP only (fetch), as an API integrator and a
 * hidden acceptance suite would see it. The base must be a loopback address; no traffic
 * goes anywhere else (a Location or fileUrl pointing elsewhere is a failure, not fetched).
 *
 *  1. creates a fresh firm and two users of it (plus an empty second firm) via the admin API;
 *  2. imports `--objects` SCIM-like users (scripts/demo-data.ts, ~900 bytes each) as ONE
 *     streamed application/x-ndjson body, generated on the fly, expecting {"imported": N};
 *  3. runs the export chain of DESIGN.md with user A: POST export (200, requestId,
 *     Location), poll honouring Retry-After (integer while Pending/InProgress,
 *     progress.processed never decreasing), Completed result {total, fileUrl (absolute),
 *     nextCursor, bytes, sha256}, download with no Authorization header, follow nextCursor
 *     until null. Every imported id exactly once, byte for byte, ids ascending, no empty
 *     page, totals add up, bytes and sha256 as announced;
 *  4. meanwhile: two concurrent starts by A (one 200, one 409 EXPORT_ALREADY_ACTIVE with
 *     activeRequestId), a second start by A while active (409), user B exporting at the
 *     same time (200, completes, file whole), B reading/cancelling A's request (404), a firm
 *     A is not in (403), tampered download links (403), tampered/truncated/foreign cursors
 *     (400 INVALID_CURSOR), no token (401 + WWW-Authenticate: Bearer), an unknown route
 *     (404 problem+json), Range (206), gzip, ETag (304).
 *
 * Prints timings and one PASS/FAIL line; exit code 1 on any failure.
 */
import { createHash, randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { makeUser, prng } from './demo-data.js'

// ---------------------------------------------------------------------------------------
// Arguments

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    'admin-token': { type: 'string' },
    objects: { type: 'string', default: '250000' },
    'job-size': { type: 'string' },
    seed: { type: 'string', default: '42' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
})
const USAGE = 'usage: npx tsx scripts/blackbox.ts --base http://127.0.0.1:3000 --admin-token TOKEN [--objects 250000] [--job-size N] [--seed 42]'
if (args.help) {
  console.log(USAGE)
  process.exit(0)
}
if (!args.base || !args['admin-token']) {
  console.error(USAGE)
  process.exit(2)
}

function isLoopback (hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1'
}

let BASE: URL
try {
  BASE = new URL(args.base)
} catch {
  console.error(`--base '${args.base}' is not a URL`)
  process.exit(2)
}
if (!['http:', 'https:'].includes(BASE.protocol) || !isLoopback(BASE.hostname)) {
  console.error(`refusing --base '${args.base}': only http(s) on a loopback address (127.0.0.0/8, ::1, localhost) is allowed`)
  process.exit(2)
}
const ORIGIN = BASE.origin
const ADMIN = args['admin-token']
const N = Number(args.objects)
if (!Number.isInteger(N) || N < 1) {
  console.error('--objects must be a positive integer')
  process.exit(2)
}
const JOB_SIZE = args['job-size'] === undefined ? undefined : Number(args['job-size'])
const SEED = Number(args.seed)

// ---------------------------------------------------------------------------------------
// Reporting

const failures: string[] = []
let passed = 0
function check (ok: boolean, what: string, evidence?: unknown): boolean {
  if (ok) {
    passed++
    console.log(`  ok   ${what}`)
  } else {
    const ev = evidence === undefined ? '' : ` — ${typeof evidence === 'string' ? evidence : JSON.stringify(evidence)}`
    failures.push(`${what}${ev}`)
    console.log(`  FAIL ${what}${ev}`)
  }
  return ok
}
function note (msg: string): void {
  console.log(`  note ${msg}`)
}
function section (title: string): void {
  console.log(`\n== ${title}`)
}
const mb = (bytes: number) => bytes / 1e6
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
const int = (n: number) => Math.round(n).toLocaleString('en-US')

// ---------------------------------------------------------------------------------------
// HTTP (only to ORIGIN)

function sameOrigin (url: string): URL {
  const u = new URL(url, ORIGIN)
  if (u.origin !== ORIGIN) throw new Error(`refusing to send traffic to ${u.origin} (not ${ORIGIN})`)
  return u
}

interface Res { status: number, headers: Headers, text: string, json: any }

async function call (method: string, path: string, opts: { token?: string | null, body?: unknown, headers?: Record<string, string>, timeoutMs?: number } = {}): Promise<Res> {
  const url = sameOrigin(path)
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  let body: string | undefined
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body)
    headers['content-type'] ??= 'application/json'
  }
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000) })
  const text = await res.text()
  let json: any
  try { json = text ? JSON.parse(text) : undefined } catch { json = undefined }
  return { status: res.status, headers: res.headers, text, json }
}

/** An RFC 9457 problem with this status and code. */
function checkProblem (res: Res, status: number, code: string, what: string): boolean {
  const ct = res.headers.get('content-type') ?? ''
  const j = res.json ?? {}
  const ok = res.status === status && ct.startsWith('application/problem+json') &&
    j.status === status && j.code === code && typeof j.type === 'string' && typeof j.title === 'string' && typeof j.detail === 'string'
  return check(ok, `${what} → ${status} ${code} problem+json`, { status: res.status, contentType: ct, body: res.text.slice(0, 300) })
}

// ---------------------------------------------------------------------------------------
// Setup

const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const FIRM = `bb-${runId}`
const OTHER_FIRM = `bb-${runId}-other`
const TYPE = 'users'

const tStart = performance.now()
console.log(`blackbox: base ${ORIGIN}, firm ${FIRM}, ${int(N)} objects, seed ${SEED}`)

section('setup (admin API)')
{
  const r = await call('PUT', `/api/v1/admin/firms/${FIRM}`, { token: ADMIN, body: { name: 'Blackbox Corp' } })
  check(r.status === 201 && r.json?.firmId === FIRM, 'PUT firm → 201', { status: r.status, body: r.text })
  const again = await call('PUT', `/api/v1/admin/firms/${FIRM}`, { token: ADMIN, body: { name: 'Blackbox Corp' } })
  check(again.status === 200, 'PUT firm again → 200 (idempotent)', { status: again.status })
  const o = await call('PUT', `/api/v1/admin/firms/${OTHER_FIRM}`, { token: ADMIN })
  check(o.status === 201, 'PUT a second firm (no body) → 201', { status: o.status, body: o.text })
  const noAdmin = await call('PUT', `/api/v1/admin/firms/${FIRM}`)
  check(noAdmin.status === 401 && /^Bearer/i.test(noAdmin.headers.get('www-authenticate') ?? ''), 'admin API without token → 401 + WWW-Authenticate: Bearer', { status: noAdmin.status, www: noAdmin.headers.get('www-authenticate') })
}
async function createUser (name: string): Promise<{ userId: string, token: string }> {
  const r = await call('POST', '/api/v1/admin/users', { token: ADMIN, body: { name, firms: [FIRM] } })
  check(r.status === 201 && typeof r.json?.token === 'string' && typeof r.json?.userId === 'string', `POST user '${name}' → 201 {userId, token}`, { status: r.status, body: r.text.slice(0, 200) })
  if (r.status !== 201) finish()
  return { userId: r.json.userId, token: r.json.token }
}
const userA = await createUser('blackbox A')
const userB = await createUser('blackbox B')

// ---------------------------------------------------------------------------------------
// Import: one streamed NDJSON body

section(`import ${int(N)} objects as one streamed application/x-ndjson body`)
/** id → base64 SHA-256 of the exact line bytes that were imported. */
const imported = new Map<string, string>()
let importBytes = 0
let duplicateIds = 0
{
  const rand = prng(SEED)
  const enc = new TextEncoder()
  let n = 0
  const BATCH = 500
  const body = new ReadableStream<Uint8Array>({
    pull (controller) {
      if (n >= N) { controller.close(); return }
      let chunk = ''
      const end = Math.min(N, n + BATCH)
      for (; n < end; n++) {
        const line = JSON.stringify(makeUser(rand, n))
        const bytes = enc.encode(line)
        const id = (JSON.parse(line) as { id: string }).id
        if (imported.has(id)) duplicateIds++
        imported.set(id, createHash('sha256').update(bytes).digest('base64'))
        chunk += line + '\n'
      }
      const buf = enc.encode(chunk)
      importBytes += buf.byteLength
      controller.enqueue(buf)
    },
  })
  const t0 = performance.now()
  const res = await fetch(sameOrigin(`/api/v1/idm/${FIRM}/${TYPE}/import`), {
    method: 'POST',
    headers: { authorization: `Bearer ${userA.token}`, 'content-type': 'application/x-ndjson' },
    body,
    duplex: 'half',
    signal: AbortSignal.timeout(30 * 60_000),
  } as RequestInit & { duplex: 'half' })
  const text = await res.text()
  const secs = (performance.now() - t0) / 1000
  let json: any
  try { json = JSON.parse(text) } catch {}
  check(res.status === 200 && json?.imported === N && Object.keys(json).length === 1, `import → 200 {"imported": ${N}}`, { status: res.status, body: text.slice(0, 300) })
  check(duplicateIds === 0, 'generated ids are unique', { duplicateIds })
  console.log(`  time import: ${int(N)} objects, ${fmt(mb(importBytes))} MB in ${fmt(secs, 2)} s = ${int(N / secs)} obj/s, ${fmt(mb(importBytes) / secs)} MB/s (avg ${int(importBytes / N)} B/object)`)
  if (res.status !== 200) finish()
}

// ---------------------------------------------------------------------------------------
// Export helpers

interface Completed { requestId: string, status: any, jobSecs: number, polls: number }

function checkLocation (res: Res, requestId: string, who: string): void {
  const loc = res.headers.get('location')
  let ok = false
  try { ok = loc !== null && sameOrigin(loc).pathname === `/api/v1/request/${requestId}` } catch {}
  check(ok, `${who}: Location header points at /api/v1/request/${requestId}`, { location: loc })
}

async function startExport (token: string, cursor?: string | null): Promise<Res> {
  return call('POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { token, body: cursor === undefined ? undefined : { cursor } })
}

/** Polls honouring Retry-After until Completed or Failed; checks the polling contract. */
async function waitFor (token: string, requestId: string, t0: number, who: string): Promise<Completed> {
  let lastProcessed = -1
  let polls = 0
  let badRetry = 0
  let decreased = 0
  const seen = new Set<string>()
  for (;;) {
    const r = await call('GET', `/api/v1/request/${requestId}`, { token })
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

interface Download { lines: number, bytes: number, sha256: string, ids: string[], head: Buffer, tail: Buffer, secs: number, emptyLines: number, endsWithNewline: boolean, mismatched: number, unknown: number, contentType: string | null, contentEncoding: string | null, etag: string | null, status: number }

/** Streams a file (identity encoding), splits lines on bytes, hashes each line. */
async function download (fileUrl: string, headers: Record<string, string> = { 'accept-encoding': 'identity' }): Promise<Download> {
  const url = sameOrigin(fileUrl)
  const t0 = performance.now()
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10 * 60_000) }) // no Authorization header
  const whole = createHash('sha256')
  const ids: string[] = []
  let lines = 0; let bytes = 0; let emptyLines = 0; let mismatched = 0; let unknown = 0
  let head = Buffer.alloc(0)
  let tail = Buffer.alloc(0)
  let rest: Buffer = Buffer.alloc(0)
  const onLine = (line: Buffer) => {
    if (line.length === 0) { emptyLines++; return }
    lines++
    let id: string | undefined
    try { id = (JSON.parse(line.toString('utf8')) as { id: string }).id } catch {}
    if (id === undefined) { unknown++; return }
    ids.push(id)
    const want = imported.get(id)
    if (want === undefined) unknown++
    else if (createHash('sha256').update(line).digest('base64') !== want) mismatched++
  }
  if (res.body && res.status < 300) {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      whole.update(buf)
      bytes += buf.length
      if (head.length < 1 << 20) head = Buffer.concat([head, buf.subarray(0, (1 << 20) - head.length)])
      tail = Buffer.concat([tail, buf]).subarray(-4096)
      let pos = 0
      for (;;) {
        const nl = buf.indexOf(10, pos)
        if (nl < 0) break
        const piece = buf.subarray(pos, nl)
        onLine(rest.length ? Buffer.concat([rest, piece]) : piece)
        rest = Buffer.alloc(0)
        pos = nl + 1
      }
      if (pos < buf.length) rest = Buffer.concat([rest, buf.subarray(pos)])
    }
  } else {
    await res.text()
  }
  const endsWithNewline = rest.length === 0
  if (rest.length) onLine(rest)
  return {
    lines, bytes, sha256: whole.digest('hex'), ids, head, tail, secs: (performance.now() - t0) / 1000, emptyLines,
    endsWithNewline, mismatched, unknown, status: res.status,
    contentType: res.headers.get('content-type'), contentEncoding: res.headers.get('content-encoding'), etag: res.headers.get('etag'),
  }
}

function checkResultShape (s: any, who: string): boolean {
  const r = s.result
  let absolute = false
  try { absolute = /^https?:$/.test(new URL(r?.fileUrl).protocol) && /^https?:\/\//.test(r.fileUrl) } catch {}
  return check(s.status === 'Completed' && r && Number.isInteger(r.total) && absolute &&
    (r.nextCursor === null || (typeof r.nextCursor === 'string' && r.nextCursor.length > 0)) &&
    Number.isInteger(r.bytes) && /^[0-9a-f]{64}$/.test(r.sha256) && typeof r.expiresAt === 'string' && s.error === undefined,
  `${who}: Completed with result {total, fileUrl (absolute), nextCursor, bytes, sha256, expiresAt}`, s)
}

// ---------------------------------------------------------------------------------------
// The chain (user A) with the concurrency and isolation checks around its first page

section('export chain (user A), concurrency and isolation')
const chainT0 = performance.now()
let firstRequestId = ''
{
  // Two truly concurrent starts by the same user: exactly one wins.
  const t0 = performance.now()
  const [r1, r2] = await Promise.all([startExport(userA.token), startExport(userA.token)])
  const ok = [r1, r2].filter((r) => r.status === 200)
  const conflict = [r1, r2].filter((r) => r.status === 409)
  check(ok.length === 1 && conflict.length === 1, 'two concurrent POST export by A → one 200, one 409', { statuses: [r1.status, r2.status], bodies: [r1.text, r2.text] })
  const winner = ok[0] ?? r1
  firstRequestId = winner.json?.requestId
  check(winner.status === 200 && /^export-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(firstRequestId), 'POST export → 200 {requestId: export-<uuid>}', winner.json)
  checkLocation(winner, firstRequestId, 'A page 1')
  if (conflict[0]) {
    checkProblem(conflict[0], 409, 'EXPORT_ALREADY_ACTIVE', 'concurrent second POST by A')
    check(conflict[0].json?.activeRequestId === firstRequestId, '409 body names activeRequestId = the active job', conflict[0].json)
  }
  if (!firstRequestId) finish()

  // A sequential second start while the first is active.
  const seq = await startExport(userA.token, null)
  const aNow = await call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })
  if (aNow.json?.status === 'Completed' && seq.status === 200) note('A\'s first job completed before the sequential second POST: 409 check inconclusive')
  else {
    checkProblem(seq, 409, 'EXPORT_ALREADY_ACTIVE', 'sequential second POST by A ({"cursor": null}) while active')
    check(seq.json?.activeRequestId === firstRequestId, 'sequential 409 names activeRequestId', seq.json)
  }

  // User B: own slot, same firm, at the same time.
  const tb0 = performance.now()
  const b = await startExport(userB.token)
  const aAfterB = await call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })
  check(b.status === 200 && typeof b.json?.requestId === 'string', 'user B POST export while A\'s job is active → 200', { status: b.status, body: b.text })
  if (aAfterB.json?.status === 'Completed') note('A\'s job had completed by the time B started: overlap not demonstrated')
  else note(`overlap: A was ${aAfterB.json?.status} when B's job was accepted`)
  const bId: string = b.json?.requestId

  // Isolation: B cannot see A's request.
  const peek = await call('GET', `/api/v1/request/${firstRequestId}`, { token: userB.token })
  checkProblem(peek, 404, 'NOT_FOUND', 'user B GET A\'s request')
  const peekText = peek.text
  check(!peekText.includes(userA.userId) && !peekText.includes(FIRM), '404 for A\'s request leaks neither A nor the firm', peekText)
  const unknownReq = await call('GET', '/api/v1/request/export-00000000-0000-4000-8000-000000000000', { token: userB.token })
  check(unknownReq.status === 404 && unknownReq.json?.detail?.replace(/export-[0-9a-f-]+/g, 'X') === peek.json?.detail?.replace(/export-[0-9a-f-]+/g, 'X'),
    'A\'s request id and a non-existent id answer B identically (404, same detail shape)', { other: peek.json, unknown: unknownReq.json })

  // A firm A is not in.
  const forbidden = await call('POST', `/api/v1/idm/${OTHER_FIRM}/${TYPE}/export`, { token: userA.token })
  checkProblem(forbidden, 403, 'FORBIDDEN', 'A POST export on a firm it is not in')

  // No token / bad token.
  for (const [what, res] of [
    ['GET status without token', await call('GET', `/api/v1/request/${firstRequestId}`)],
    ['POST export without token', await call('POST', `/api/v1/idm/${FIRM}/${TYPE}/export`)],
    ['GET status with an unknown token', await call('GET', `/api/v1/request/${firstRequestId}`, { token: 'bes_not-a-real-token' })],
  ] as const) {
    checkProblem(res, 401, 'UNAUTHENTICATED', what)
    check(/^Bearer\b/i.test(res.headers.get('www-authenticate') ?? ''), `${what}: WWW-Authenticate: Bearer`, { www: res.headers.get('www-authenticate') })
  }

  // Unknown route.
  const nf = await call('GET', '/api/v1/no-such-route', { token: userA.token })
  checkProblem(nf, 404, 'NOT_FOUND', 'unknown route GET /api/v1/no-such-route')
  const nf2 = await call('GET', '/no-such-route-at-all')
  checkProblem(nf2, 404, 'NOT_FOUND', 'unknown route GET /no-such-route-at-all (no token)')

  // Wait for B in parallel with the chain.
  const bDone = (async () => {
    const done = await waitFor(userB.token, bId, tb0, 'B')
    if (!checkResultShape(done.status, 'B')) return
    const d = await download(done.status.result.fileUrl)
    check(d.status === 200 && d.lines === done.status.result.total && d.sha256 === done.status.result.sha256 && d.mismatched === 0 && d.unknown === 0,
      `B: file whole (${int(d.lines)} lines, sha256 matches, byte-for-byte)`, { status: d.status, lines: d.lines, total: done.status.result.total, mismatched: d.mismatched })
    console.log(`  time B page 1: job ${fmt(done.jobSecs, 1)} s (queued behind A's when workers are busy), download ${fmt(mb(d.bytes) / d.secs)} MB/s`)
  })()

  // -------------------------------------------------------------------------------------
  // Follow the chain
  const seen = new Map<string, number>()
  let lastId: string | null = null
  let outOfOrder = 0
  let sumTotals = 0
  let pages = 0
  let emptyPages = 0
  let requestId = firstRequestId
  let jobT0 = t0
  const cursorsUsed: string[] = []
  let page1: { status: any, d: Download } | undefined
  let totalDownloadBytes = 0
  let totalDownloadSecs = 0
  let lastCursor: string | null = null
  for (;;) {
    pages++
    const done = await waitFor(userA.token, requestId, jobT0, `A page ${pages}`)
    if (!checkResultShape(done.status, `A page ${pages}`)) {
      check(false, `A page ${pages} completed`, done.status)
      break
    }
    const result = done.status.result
    check(new URL(result.fileUrl).origin === ORIGIN, `A page ${pages}: fileUrl is on the server's origin`, result.fileUrl)
    const d = await download(result.fileUrl)
    totalDownloadBytes += d.bytes
    totalDownloadSecs += d.secs
    check(d.status === 200, `A page ${pages}: download without Authorization → 200`, { status: d.status })
    check((d.contentType ?? '').startsWith('application/x-ndjson'), `A page ${pages}: Content-Type application/x-ndjson`, d.contentType)
    check(d.lines === result.total && d.bytes === result.bytes && d.sha256 === result.sha256,
      `A page ${pages}: lines == total (${int(result.total)}), bytes == result.bytes, sha256 == result.sha256`, { lines: d.lines, total: result.total, bytes: d.bytes, resultBytes: result.bytes, sha: d.sha256, resultSha: result.sha256 })
    check(d.emptyLines === 0 && (d.bytes === 0 || d.endsWithNewline), `A page ${pages}: no blank lines, last line \\n-terminated`, { emptyLines: d.emptyLines, endsWithNewline: d.endsWithNewline })
    check(d.mismatched === 0 && d.unknown === 0, `A page ${pages}: every line byte-for-byte equal to the imported line`, { mismatched: d.mismatched, unknown: d.unknown })
    if (result.total === 0) emptyPages++
    for (const id of d.ids) {
      seen.set(id, (seen.get(id) ?? 0) + 1)
      if (lastId !== null && Buffer.compare(Buffer.from(lastId), Buffer.from(id)) >= 0) outOfOrder++
      lastId = id
    }
    sumTotals += result.total
    if (pages === 1) {
      page1 = { status: done.status, d }
      if (JOB_SIZE === undefined) note(`page 1 holds ${int(result.total)} objects (taken as the job size)`)
    }
    const expectedSize = JOB_SIZE ?? page1!.status.result.total
    const remaining = N - (sumTotals - result.total)
    check(result.total === Math.min(expectedSize, remaining), `A page ${pages}: total ${int(result.total)} == min(job size, remaining)`, { total: result.total, expectedSize, remaining })
    console.log(`  time A page ${pages}: job ${fmt(done.jobSecs, 1)} s (POST → Completed seen, ${done.polls} polls), download ${fmt(mb(d.bytes))} MB in ${fmt(d.secs, 2)} s = ${fmt(mb(d.bytes) / d.secs)} MB/s`)
    if (result.nextCursor === null) break
    lastCursor = result.nextCursor
    cursorsUsed.push(result.nextCursor)
    if (pages > Math.ceil(N / Math.max(1, expectedSize)) + 2) {
      check(false, 'chain ends', { pages })
      break
    }
    jobT0 = performance.now()
    let next = await startExport(userA.token, result.nextCursor)
    while (next.status === 409) { // B's job does not block A; only A's own job could.
      check(false, `A page ${pages + 1}: POST with cursor → 200 (got 409 although A has no active job)`, next.json)
      await sleep(1000)
      next = await startExport(userA.token, result.nextCursor)
    }
    check(next.status === 200 && typeof next.json?.requestId === 'string', `A page ${pages + 1}: POST {cursor} → 200`, { status: next.status, body: next.text })
    if (next.status !== 200) break
    checkLocation(next, next.json.requestId, `A page ${pages + 1}`)
    requestId = next.json.requestId
  }
  const chainSecs = (performance.now() - chainT0) / 1000

  section('chain totals')
  const missing = [...imported.keys()].filter((id) => !seen.has(id)).length
  const dup = [...seen.values()].filter((c) => c > 1).length
  const extra = [...seen.keys()].filter((id) => !imported.has(id)).length
  check(missing === 0 && dup === 0 && extra === 0, `every imported id exactly once (${int(seen.size)} distinct ids over ${pages} pages)`, { missing, duplicated: dup, extra })
  check(sumTotals === N, `sum of page totals == ${int(N)}`, { sumTotals })
  check(emptyPages === 0, 'no empty page', { emptyPages })
  check(outOfOrder === 0, 'ids strictly ascending across the chain (stable key order)', { outOfOrder })
  if (JOB_SIZE !== undefined) check(pages === Math.ceil(N / JOB_SIZE), `pages == ceil(N / job size) = ${Math.ceil(N / JOB_SIZE)}`, { pages })
  console.log(`  time whole chain: ${int(N)} objects in ${fmt(chainSecs, 1)} s = ${int(N / chainSecs)} obj/s (POST → last file downloaded); downloads ${fmt(mb(totalDownloadBytes))} MB at ${fmt(mb(totalDownloadBytes) / totalDownloadSecs)} MB/s`)

  await bDone

  // -------------------------------------------------------------------------------------
  section('downloads: signature, Range, gzip, ETag')
  if (page1) {
    const fileUrl: string = (await call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })).json.result.fileUrl
    const u = new URL(fileUrl)
    const sig = u.searchParams.get('sig') ?? ''
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1)
    for (const [what, mutate] of [
      ['sig with a middle character changed', (x: URL) => x.searchParams.set('sig', flip(sig, Math.floor(sig.length / 2)))],
      ['sig with its last character changed', (x: URL) => x.searchParams.set('sig', flip(sig, sig.length - 1))],
      ['sig truncated', (x: URL) => x.searchParams.set('sig', sig.slice(0, -2))],
      ['expires moved 1 s later', (x: URL) => x.searchParams.set('expires', String(Number(x.searchParams.get('expires')) + 1))],
      ['requestId swapped for B\'s', (x: URL) => { x.pathname = x.pathname.replace(firstRequestId, bId) }],
    ] as const) {
      const x = new URL(fileUrl)
      mutate(x)
      const r = await call('GET', x.toString())
      checkProblem(r, 403, 'INVALID_SIGNATURE', `tampered fileUrl (${what})`)
    }
    const noSig = new URL(fileUrl)
    noSig.searchParams.delete('sig')
    const rNoSig = await call('GET', noSig.toString())
    check(rNoSig.status === 400 || rNoSig.status === 403, 'fileUrl without sig → 400 or 403', { status: rNoSig.status, body: rNoSig.text.slice(0, 200) })

    const size: number = page1.status.result.bytes
    const range = await fetch(sameOrigin(fileUrl), { headers: { range: 'bytes=100-199', 'accept-encoding': 'identity' } })
    const rb = Buffer.from(await range.arrayBuffer())
    check(range.status === 206 && range.headers.get('content-range') === `bytes 100-199/${size}` && rb.equals(page1.d.head.subarray(100, 200)),
      'Range: bytes=100-199 → 206, Content-Range, the right bytes', { status: range.status, contentRange: range.headers.get('content-range'), len: rb.length })
    const mid = Math.floor(size / 2)
    const resume = await fetch(sameOrigin(fileUrl), { headers: { range: `bytes=${size - 4096}-`, 'accept-encoding': 'identity' } })
    const resB = Buffer.from(await resume.arrayBuffer())
    check(resume.status === 206 && resB.equals(page1.d.tail), `Range: bytes=${size - 4096}- (resume to the end) → 206 and the file's last 4096 bytes`, { status: resume.status, len: resB.length })
    const suffix = await fetch(sameOrigin(fileUrl), { headers: { range: 'bytes=-100', 'accept-encoding': 'identity' } })
    const sb = Buffer.from(await suffix.arrayBuffer())
    check(suffix.status === 206 && sb.equals(page1.d.tail.subarray(-100)), 'Range: bytes=-100 → 206 and the last 100 bytes', { status: suffix.status, len: sb.length })
    const rg = await fetch(sameOrigin(fileUrl), { headers: { range: `bytes=${mid}-${mid + 9}`, 'accept-encoding': 'gzip' } })
    const rgb = Buffer.from(await rg.arrayBuffer())
    check(rg.status === 206 && rgb.length === 10 && rg.headers.get('content-range') === `bytes ${mid}-${mid + 9}/${size}`, 'Range together with Accept-Encoding: gzip → 206 with offsets of the file', { status: rg.status, len: rgb.length, ce: rg.headers.get('content-encoding'), cr: rg.headers.get('content-range') })
    const outside = await fetch(sameOrigin(fileUrl), { headers: { range: `bytes=${size + 10}-${size + 20}`, 'accept-encoding': 'identity' } })
    check(outside.status === 416, 'Range outside the file → 416', { status: outside.status, body: (await outside.text()).slice(0, 200) })

    const g = await download(fileUrl, { 'accept-encoding': 'gzip' })
    check(g.status === 200 && g.contentEncoding === 'gzip' && g.sha256 === page1.status.result.sha256 && g.lines === page1.status.result.total,
      'Accept-Encoding: gzip → Content-Encoding: gzip, decompresses to the exact file', { status: g.status, ce: g.contentEncoding, sha: g.sha256, lines: g.lines })
    console.log(`  time gzip download of page 1: ${fmt(g.secs, 2)} s = ${fmt(mb(g.bytes) / g.secs)} MB/s of file content`)

    const etag = page1.d.etag
    if (etag) {
      const c = await fetch(sameOrigin(fileUrl), { headers: { 'if-none-match': etag, 'accept-encoding': 'identity', 'cache-control': 'max-age=0' } }) // explicit, else fetch adds no-cache
      await c.arrayBuffer()
      check(c.status === 304, 'If-None-Match with the ETag → 304', { status: c.status })
    } else check(false, 'download carries an ETag', page1.d)
  }

  // -------------------------------------------------------------------------------------
  section('cursors')
  if (cursorsUsed.length > 0) {
    const c = cursorsUsed[0]
    const [v, payload, sig] = c.split('.')
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1)
    const forged = [
      ['signature middle character changed', c.length === 0 ? c : [v, payload, flip(sig ?? '', Math.floor((sig ?? '').length / 2))].join('.')],
      ['signature last character changed', [v, payload, flip(sig ?? '', (sig ?? '').length - 1)].join('.')],
      ['payload changed', [v, flip(payload ?? '', Math.floor((payload ?? '').length / 2)), sig].join('.')],
      ['truncated', c.slice(0, -5)],
      ['garbage', 'not-a-cursor'],
      ['base64 of a JSON offset', Buffer.from(JSON.stringify({ offset: 100000 })).toString('base64url')],
    ] as const
    for (const [what, cur] of forged) {
      const r = await startExport(userA.token, cur)
      checkProblem(r, 400, 'INVALID_CURSOR', `POST export with a tampered cursor (${what})`)
    }
    const foreignType = await call('POST', `/api/v1/idm/${FIRM}/groups/export`, { token: userA.token, body: { cursor: c } })
    checkProblem(foreignType, 400, 'INVALID_CURSOR', 'cursor of users used on groups (foreign object type)')
    const wrongField = await call('POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { token: userA.token, body: { next_cursor: c } })
    checkProblem(wrongField, 400, 'VALIDATION_FAILED', 'unknown body field next_cursor')
    if (lastCursor) note(`last non-null cursor: ${lastCursor.length} chars`)
  }

  // -------------------------------------------------------------------------------------
  section('isolation after the chain')
  const del = await call('DELETE', `/api/v1/request/${firstRequestId}`, { token: userB.token })
  checkProblem(del, 404, 'NOT_FOUND', 'user B DELETE A\'s request')
  const still = await call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })
  const stillFile = still.json?.result?.fileUrl ? await fetch(sameOrigin(still.json.result.fileUrl), { method: 'HEAD', headers: { 'accept-encoding': 'identity' } }) : undefined
  check(still.json?.status === 'Completed' && stillFile?.status === 200, 'A\'s request and file are untouched by B\'s DELETE', { status: still.json?.status, file: stillFile?.status })
}

finish()

function finish (): never {
  const secs = (performance.now() - tStart) / 1000
  console.log(`\n${passed} checks passed, ${failures.length} failed, ${fmt(secs, 1)} s in all`)
  if (failures.length) {
    console.log('failures:')
    for (const f of failures) console.log(`  - ${f.slice(0, 600)}`)
    console.log('FAIL')
    process.exit(1)
  }
  console.log('PASS')
  process.exit(0)
}
