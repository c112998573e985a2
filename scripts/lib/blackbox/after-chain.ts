/** The black-box check's checks on a finished chain: download links, cursors and isolation. */
import { fmt, mb } from '../format.js'
import type { ChainOutcome } from './chain.js'
import { check, checkProblem, note, section } from './checks.js'
import type { User } from './setup.js'
import type { Target } from './target.js'

/** `s` with its i-th character changed (to 'B' if it was 'A', else to 'A'). */
const flip = (s: string, i: number): string => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1)

/** Tampered download links (403), Range (206, 416), gzip and ETag (304) on page 1. */
export async function checkDownloads (t: Target, userA: User, { firstRequestId, bId, page1 }: ChainOutcome): Promise<void> {
  section('downloads: signature, Range, gzip, ETag')
  if (!page1) return
  const fileUrl: string = (await t.call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })).json.result.fileUrl
  const u = new URL(fileUrl)
  const sig = u.searchParams.get('sig') ?? ''
  for (const [what, mutate] of [
    ['sig with a middle character changed', (x: URL) => x.searchParams.set('sig', flip(sig, Math.floor(sig.length / 2)))],
    ['sig with its last character changed', (x: URL) => x.searchParams.set('sig', flip(sig, sig.length - 1))],
    ['sig truncated', (x: URL) => x.searchParams.set('sig', sig.slice(0, -2))],
    ['expires moved 1 s later', (x: URL) => x.searchParams.set('expires', String(Number(x.searchParams.get('expires')) + 1))],
    ['requestId swapped for B\'s', (x: URL) => { x.pathname = x.pathname.replace(firstRequestId, bId) }],
  ] as const) {
    const x = new URL(fileUrl)
    mutate(x)
    const r = await t.call('GET', x.toString())
    checkProblem(r, 403, 'INVALID_SIGNATURE', `tampered fileUrl (${what})`)
  }
  const noSig = new URL(fileUrl)
  noSig.searchParams.delete('sig')
  const rNoSig = await t.call('GET', noSig.toString())
  check(rNoSig.status === 400 || rNoSig.status === 403, 'fileUrl without sig → 400 or 403', { status: rNoSig.status, body: rNoSig.text.slice(0, 200) })

  const size: number = page1.status.result.bytes
  const range = await fetch(t.url(fileUrl), { headers: { range: 'bytes=100-199', 'accept-encoding': 'identity' } })
  const rb = Buffer.from(await range.arrayBuffer())
  check(range.status === 206 && range.headers.get('content-range') === `bytes 100-199/${size}` && rb.equals(page1.d.head.subarray(100, 200)),
    'Range: bytes=100-199 → 206, Content-Range, the right bytes', { status: range.status, contentRange: range.headers.get('content-range'), len: rb.length })
  const mid = Math.floor(size / 2)
  const resume = await fetch(t.url(fileUrl), { headers: { range: `bytes=${size - 4096}-`, 'accept-encoding': 'identity' } })
  const resB = Buffer.from(await resume.arrayBuffer())
  check(resume.status === 206 && resB.equals(page1.d.tail), `Range: bytes=${size - 4096}- (resume to the end) → 206 and the file's last 4096 bytes`, { status: resume.status, len: resB.length })
  const suffix = await fetch(t.url(fileUrl), { headers: { range: 'bytes=-100', 'accept-encoding': 'identity' } })
  const sb = Buffer.from(await suffix.arrayBuffer())
  check(suffix.status === 206 && sb.equals(page1.d.tail.subarray(-100)), 'Range: bytes=-100 → 206 and the last 100 bytes', { status: suffix.status, len: sb.length })
  const rg = await fetch(t.url(fileUrl), { headers: { range: `bytes=${mid}-${mid + 9}`, 'accept-encoding': 'gzip' } })
  const rgb = Buffer.from(await rg.arrayBuffer())
  check(rg.status === 206 && rgb.length === 10 && rg.headers.get('content-range') === `bytes ${mid}-${mid + 9}/${size}`, 'Range together with Accept-Encoding: gzip → 206 with offsets of the file', { status: rg.status, len: rgb.length, ce: rg.headers.get('content-encoding'), cr: rg.headers.get('content-range') })
  const outside = await fetch(t.url(fileUrl), { headers: { range: `bytes=${size + 10}-${size + 20}`, 'accept-encoding': 'identity' } })
  check(outside.status === 416, 'Range outside the file → 416', { status: outside.status, body: (await outside.text()).slice(0, 200) })

  const g = await t.download(fileUrl, { 'accept-encoding': 'gzip' })
  check(g.status === 200 && g.contentEncoding === 'gzip' && g.sha256 === page1.status.result.sha256 && g.lines === page1.status.result.total,
    'Accept-Encoding: gzip → Content-Encoding: gzip, decompresses to the exact file', { status: g.status, ce: g.contentEncoding, sha: g.sha256, lines: g.lines })
  console.log(`  time gzip download of page 1: ${fmt(g.secs, 2)} s = ${fmt(mb(g.bytes) / g.secs, 1)} MB/s of file content`)

  const etag = page1.d.etag
  if (etag) {
    const c = await fetch(t.url(fileUrl), { headers: { 'if-none-match': etag, 'accept-encoding': 'identity', 'cache-control': 'max-age=0' } }) // explicit, else fetch adds no-cache
    await c.arrayBuffer()
    check(c.status === 304, 'If-None-Match with the ETag → 304', { status: c.status })
  } else check(false, 'download carries an ETag', page1.d)
}

/** Tampered, truncated and foreign cursors (400 INVALID_CURSOR), a misspelt cursor field (400). */
export async function checkCursors (t: Target, userA: User, { cursorsUsed, lastCursor }: ChainOutcome): Promise<void> {
  section('cursors')
  if (cursorsUsed.length === 0) return
  const c = cursorsUsed[0]
  const [v, payload, sig] = c.split('.')
  const forged = [
    ['signature middle character changed', c.length === 0 ? c : [v, payload, flip(sig ?? '', Math.floor((sig ?? '').length / 2))].join('.')],
    ['signature last character changed', [v, payload, flip(sig ?? '', (sig ?? '').length - 1)].join('.')],
    ['payload changed', [v, flip(payload ?? '', Math.floor((payload ?? '').length / 2)), sig].join('.')],
    ['truncated', c.slice(0, -5)],
    ['garbage', 'not-a-cursor'],
    ['base64 of a JSON offset', Buffer.from(JSON.stringify({ offset: 100000 })).toString('base64url')],
  ] as const
  for (const [what, cur] of forged) {
    const r = await t.startExport(userA.token, cur)
    checkProblem(r, 400, 'INVALID_CURSOR', `POST export with a tampered cursor (${what})`)
  }
  const foreignType = await t.call('POST', `/api/v1/idm/${t.firm}/groups/export`, { token: userA.token, body: { cursor: c } })
  checkProblem(foreignType, 400, 'INVALID_CURSOR', 'cursor of users used on groups (foreign object type)')
  const wrongField = await t.call('POST', `/api/v1/idm/${t.firm}/${t.type}/export`, { token: userA.token, body: { next_cursor: c } })
  checkProblem(wrongField, 400, 'VALIDATION_FAILED', 'unknown body field next_cursor')
  if (lastCursor) note(`last non-null cursor: ${lastCursor.length} chars`)
}

/** B cannot cancel A's request, which stays as it was. */
export async function checkIsolation (t: Target, userA: User, userB: User, { firstRequestId }: ChainOutcome): Promise<void> {
  section('isolation after the chain')
  const del = await t.call('DELETE', `/api/v1/request/${firstRequestId}`, { token: userB.token })
  checkProblem(del, 404, 'NOT_FOUND', 'user B DELETE A\'s request')
  const still = await t.call('GET', `/api/v1/request/${firstRequestId}`, { token: userA.token })
  const stillFile = still.json?.result?.fileUrl ? await fetch(t.url(still.json.result.fileUrl), { method: 'HEAD', headers: { 'accept-encoding': 'identity' } }) : undefined
  check(still.json?.status === 'Completed' && stillFile?.status === 200, 'A\'s request and file are untouched by B\'s DELETE', { status: still.json?.status, file: stillFile?.status })
}
