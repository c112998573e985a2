/**
 * The black-box check's export chain (user A), with the concurrency and isolation checks
 * around its first page, and user B exporting at the same time.
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fmt, mb } from '../format.js'
import { IdOrder } from '../ndjson-lines.js'
import { check, checkProblem, finish, note, section } from './checks.js'
import type { User } from './setup.js'
import { checkResultShape, type Download, type Target } from './target.js'

/** What the checks after the chain work with. */
export interface ChainOutcome {
  firstRequestId: string
  bId: string
  /** The first page's status and download, when it completed. */
  page1: { status: any, d: Download } | undefined
  cursorsUsed: string[]
  lastCursor: string | null
}

/**
 * Starts A's chain: two concurrent starts by A (one 200, one 409 EXPORT_ALREADY_ACTIVE
 * with activeRequestId), a second start while active (409), B starting at the same time
 * (200), B reading A's request (404), a firm A is not in (403), no token (401), an
 * unknown route (404).
 */
async function startChain (t: Target, userA: User, userB: User, otherFirm: string): Promise<{ firstRequestId: string, t0: number, bId: string, tb0: number }> {
  // Two truly concurrent starts by the same user: exactly one wins.
  const t0 = performance.now()
  const [r1, r2] = await Promise.all([t.startExport(userA.token), t.startExport(userA.token)])
  const ok = [r1, r2].filter((r) => r.status === 200)
  const conflict = [r1, r2].filter((r) => r.status === 409)
  check(ok.length === 1 && conflict.length === 1, 'two concurrent POST export by A → one 200, one 409', { statuses: [r1.status, r2.status], bodies: [r1.text, r2.text] })
  const winner = ok[0] ?? r1
  const firstRequestId: string = winner.json?.requestId
  check(winner.status === 200 && /^export-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(firstRequestId), 'POST export → 200 {requestId: export-<uuid>}', winner.json)
  t.checkLocation(winner, firstRequestId, 'A page 1')
  if (conflict[0]) {
    checkProblem(conflict[0], 409, 'EXPORT_ALREADY_ACTIVE', 'concurrent second POST by A')
    check(conflict[0].json?.activeRequestId === firstRequestId, '409 body names activeRequestId = the active job', conflict[0].json)
  }
  if (!firstRequestId) finish()

  // A sequential second start while the first is active.
  const seq = await t.startExport(userA.token, null)
  const aNow = await t.call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })
  if (aNow.json?.status === 'Completed' && seq.status === 200) note('A\'s first job completed before the sequential second POST: 409 check inconclusive')
  else {
    checkProblem(seq, 409, 'EXPORT_ALREADY_ACTIVE', 'sequential second POST by A ({"cursor": null}) while active')
    check(seq.json?.activeRequestId === firstRequestId, 'sequential 409 names activeRequestId', seq.json)
  }

  // User B: own slot, same firm, at the same time.
  const tb0 = performance.now()
  const b = await t.startExport(userB.token)
  const aAfterB = await t.call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })
  check(b.status === 200 && typeof b.json?.requestId === 'string', 'user B POST export while A\'s job is active → 200', { status: b.status, body: b.text })
  if (aAfterB.json?.status === 'Completed') note('A\'s job had completed by the time B started: overlap not demonstrated')
  else note(`overlap: A was ${aAfterB.json?.status} when B's job was accepted`)
  const bId: string = b.json?.requestId

  // Isolation: B cannot see A's request.
  const peek = await t.call('GET', `/api/v1/request/${firstRequestId}`, { token: userB.token })
  checkProblem(peek, 404, 'NOT_FOUND', 'user B GET A\'s request')
  const peekText = peek.text
  check(!peekText.includes(userA.userId) && !peekText.includes(t.firm), '404 for A\'s request leaks neither A nor the firm', peekText)
  const unknownReq = await t.call('GET', '/api/v1/request/export-00000000-0000-4000-8000-000000000000', { token: userB.token })
  check(unknownReq.status === 404 && unknownReq.json?.detail?.replace(/export-[0-9a-f-]+/g, 'X') === peek.json?.detail?.replace(/export-[0-9a-f-]+/g, 'X'),
    'A\'s request id and a non-existent id answer B identically (404, same detail shape)', { other: peek.json, unknown: unknownReq.json })

  // A firm A is not in.
  const forbidden = await t.call('POST', `/api/v1/idm/${otherFirm}/${t.type}/export`, { token: userA.token })
  checkProblem(forbidden, 403, 'FORBIDDEN', 'A POST export on a firm it is not in')

  // No token / bad token.
  for (const [what, res] of [
    ['GET status without token', await t.call('GET', `/api/v1/request/${firstRequestId}`)],
    ['POST export without token', await t.call('POST', `/api/v1/idm/${t.firm}/${t.type}/export`)],
    ['GET status with an unknown token', await t.call('GET', `/api/v1/request/${firstRequestId}`, { token: 'bes_not-a-real-token' })],
  ] as const) {
    checkProblem(res, 401, 'UNAUTHENTICATED', what)
    check(/^Bearer\b/i.test(res.headers.get('www-authenticate') ?? ''), `${what}: WWW-Authenticate: Bearer`, { www: res.headers.get('www-authenticate') })
  }

  // Unknown route.
  const nf = await t.call('GET', '/api/v1/no-such-route', { token: userA.token })
  checkProblem(nf, 404, 'NOT_FOUND', 'unknown route GET /api/v1/no-such-route')
  const nf2 = await t.call('GET', '/no-such-route-at-all')
  checkProblem(nf2, 404, 'NOT_FOUND', 'unknown route GET /no-such-route-at-all (no token)')

  return { firstRequestId, t0, bId, tb0 }
}

/**
 * Follows A's chain to its end, checking every page (every imported id exactly once, byte
 * for byte, ids ascending, no empty page, totals add up, bytes and sha256 as announced),
 * while B's job is waited for and its file checked.
 */
export async function runChain (t: Target, userA: User, userB: User, otherFirm: string, n: number, jobSize: number | undefined): Promise<ChainOutcome> {
  section('export chain (user A), concurrency and isolation')
  const chainT0 = performance.now()
  const { firstRequestId, t0, bId, tb0 } = await startChain(t, userA, userB, otherFirm)

  // Wait for B in parallel with the chain.
  const bDone = (async () => {
    const done = await t.waitFor(userB.token, bId, tb0, 'B')
    if (!checkResultShape(done.status, 'B')) return
    const d = await t.download(done.status.result.fileUrl)
    check(d.status === 200 && d.lines === done.status.result.total && d.sha256 === done.status.result.sha256 && d.mismatched === 0 && d.unknown === 0,
      `B: file whole (${fmt(d.lines)} lines, sha256 matches, byte-for-byte)`, { status: d.status, lines: d.lines, total: done.status.result.total, mismatched: d.mismatched })
    console.log(`  time B page 1: job ${fmt(done.jobSecs, 1)} s (queued behind A's when workers are busy), download ${fmt(mb(d.bytes) / d.secs, 1)} MB/s`)
  })()

  // Follow the chain.
  const seen = new Map<string, number>()
  const order = new IdOrder()
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
    const done = await t.waitFor(userA.token, requestId, jobT0, `A page ${pages}`)
    if (!checkResultShape(done.status, `A page ${pages}`)) {
      check(false, `A page ${pages} completed`, done.status)
      break
    }
    const result = done.status.result
    check(new URL(result.fileUrl).origin === t.origin, `A page ${pages}: fileUrl is on the server's origin`, result.fileUrl)
    const d = await t.download(result.fileUrl)
    totalDownloadBytes += d.bytes
    totalDownloadSecs += d.secs
    check(d.status === 200, `A page ${pages}: download without Authorization → 200`, { status: d.status })
    check((d.contentType ?? '').startsWith('application/x-ndjson'), `A page ${pages}: Content-Type application/x-ndjson`, d.contentType)
    check(d.lines === result.total && d.bytes === result.bytes && d.sha256 === result.sha256,
      `A page ${pages}: lines == total (${fmt(result.total)}), bytes == result.bytes, sha256 == result.sha256`, { lines: d.lines, total: result.total, bytes: d.bytes, resultBytes: result.bytes, sha: d.sha256, resultSha: result.sha256 })
    check(d.emptyLines === 0 && (d.bytes === 0 || d.endsWithNewline), `A page ${pages}: no blank lines, last line \\n-terminated`, { emptyLines: d.emptyLines, endsWithNewline: d.endsWithNewline })
    check(d.mismatched === 0 && d.unknown === 0, `A page ${pages}: every line byte-for-byte equal to the imported line`, { mismatched: d.mismatched, unknown: d.unknown })
    if (result.total === 0) emptyPages++
    for (const id of d.ids) {
      seen.set(id, (seen.get(id) ?? 0) + 1)
      if (!order.next(id)) outOfOrder++
    }
    sumTotals += result.total
    if (pages === 1) {
      page1 = { status: done.status, d }
      if (jobSize === undefined) note(`page 1 holds ${fmt(result.total)} objects (taken as the job size)`)
    }
    const expectedSize = jobSize ?? page1!.status.result.total
    const remaining = n - (sumTotals - result.total)
    check(result.total === Math.min(expectedSize, remaining), `A page ${pages}: total ${fmt(result.total)} == min(job size, remaining)`, { total: result.total, expectedSize, remaining })
    console.log(`  time A page ${pages}: job ${fmt(done.jobSecs, 1)} s (POST → Completed seen, ${done.polls} polls), download ${fmt(mb(d.bytes), 1)} MB in ${fmt(d.secs, 2)} s = ${fmt(mb(d.bytes) / d.secs, 1)} MB/s`)
    if (result.nextCursor === null) break
    lastCursor = result.nextCursor
    cursorsUsed.push(result.nextCursor)
    if (pages > Math.ceil(n / Math.max(1, expectedSize)) + 2) {
      check(false, 'chain ends', { pages })
      break
    }
    jobT0 = performance.now()
    let next = await t.startExport(userA.token, result.nextCursor)
    while (next.status === 409) { // B's job does not block A; only A's own job could.
      check(false, `A page ${pages + 1}: POST with cursor → 200 (got 409 although A has no active job)`, next.json)
      await sleep(1000)
      next = await t.startExport(userA.token, result.nextCursor)
    }
    check(next.status === 200 && typeof next.json?.requestId === 'string', `A page ${pages + 1}: POST {cursor} → 200`, { status: next.status, body: next.text })
    if (next.status !== 200) break
    t.checkLocation(next, next.json.requestId, `A page ${pages + 1}`)
    requestId = next.json.requestId
  }
  const chainSecs = (performance.now() - chainT0) / 1000

  section('chain totals')
  const missing = [...t.imported.keys()].filter((id) => !seen.has(id)).length
  const dup = [...seen.values()].filter((c) => c > 1).length
  const extra = [...seen.keys()].filter((id) => !t.imported.has(id)).length
  check(missing === 0 && dup === 0 && extra === 0, `every imported id exactly once (${fmt(seen.size)} distinct ids over ${pages} pages)`, { missing, duplicated: dup, extra })
  check(sumTotals === n, `sum of page totals == ${fmt(n)}`, { sumTotals })
  check(emptyPages === 0, 'no empty page', { emptyPages })
  check(outOfOrder === 0, 'ids strictly ascending across the chain (stable key order)', { outOfOrder })
  if (jobSize !== undefined) check(pages === Math.ceil(n / jobSize), `pages == ceil(N / job size) = ${Math.ceil(n / jobSize)}`, { pages })
  console.log(`  time whole chain: ${fmt(n)} objects in ${fmt(chainSecs, 1)} s = ${fmt(n / chainSecs)} obj/s (POST → last file downloaded); downloads ${fmt(mb(totalDownloadBytes), 1)} MB at ${fmt(mb(totalDownloadBytes) / totalDownloadSecs, 1)} MB/s`)

  await bDone
  return { firstRequestId, bId, page1, cursorsUsed, lastCursor }
}
