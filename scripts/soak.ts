/**
 * `npx tsx scripts/soak.ts [--seconds 60] [--pollers 200] [--objects 60000] [--job-size 10000]
 *                          [--users 4] [--chain-tokens 4] [--poll-pause-ms 200] [--chain-poll-ms 100]
 *                          [--workers N] [--dist]`
 *
 * Soak test of the real server, as a child process on loopback:
 *  1. seeds `--objects` SCIM-like users (scripts/lib/demo-data.ts) into a temporary
 *     DATA_DIR by opening the store in this process (openSqliteStore + upsertObjects),
 *     then closes it;
 *  2. starts the server (`node --import tsx src/server.ts`, or `node dist/server.js` with
 *     `--dist`) on 127.0.0.1 and a free port, with LOG_LEVEL=warn, EXPORT_JOB_SIZE=--job-size
 *     and the default rate limits: every client gets its own token through the admin API
 *     (a firm, `--users` users of it, `--chain-tokens` tokens per user for its export chain
 *     and one token per poller);
 *  3. for `--seconds`, runs `--pollers` closed loops, each on its own keep-alive connection (poller i
 *     belongs to user i mod --users): GET /api/v1/request/{the user's latest job} and
 *     GET /healthz, then a `--poll-pause-ms` pause. Meanwhile each user runs export chains
 *     one after the other: POST export (no cursor), poll every `--chain-poll-ms` until
 *     Completed, stream the file, follow nextCursor until null. Each chain is checked:
 *     every seeded id exactly once, byte-for-byte the seeded JSON, ids strictly ascending
 *     (UTF-8 bytes, SQLite's BINARY order), lines == result.total, bytes == result.bytes,
 *     sha256 == result.sha256, ceil(objects / job size) pages, nextCursor null only at the end;
 *  4. at the deadline every loop stops (a chain still running is abandoned and its job
 *     cancelled with DELETE), the server gets SIGTERM (SIGKILL if it does not stop in 20 s)
 *     and the temporary directory is removed.
 *
 * Errors are network errors, unexpected HTTP statuses (409 included: each user runs one
 * chain at a time), any 5xx, a decreasing `progress.processed`, a server log line at
 * level error or above, and a server that does not stop cleanly. 429s are counted apart.
 * Exit code 1 on any error, any 5xx, any inexact or failed chain, or no completed chain.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { adminClient } from './lib/api-client.js'
import { parseFlags } from './lib/args.js'
import { fmt } from './lib/format.js'
import { loopDelayMeter, processCpuSeconds, processRss } from './lib/meters.js'
import { freePort, startServerProcess, waitReady, type ServerProcess } from './lib/server-process.js'
import { chainLoop, type ChainOutcome } from './lib/soak/chain.js'
import type { SoakContext, UserState } from './lib/soak/context.js'
import { seedDataSet } from './lib/soak/data-set.js'
import { poller } from './lib/soak/poller.js'
import { report } from './lib/soak/report.js'
import { MAX_SAMPLES, Traffic } from './lib/soak/traffic.js'

const FIRM = 'soak'
const TYPE = 'users'
const STOP_TIMEOUT_MS = 20_000
/** After the deadline, in-flight work gets this long before the watchdog gives up. */
const WATCHDOG_GRACE_MS = 90_000

const args = parseFlags(
  'usage: npx tsx scripts/soak.ts [--seconds 60] [--pollers 200] [--objects 60000] [--job-size 10000] [--users 4]\n' +
  '                          [--chain-tokens 4] [--poll-pause-ms 200] [--chain-poll-ms 100] [--workers N] [--dist]',
  {
    whole: {
      seconds: { min: 1, default: 60 },
      pollers: { min: 0, default: 200 },
      objects: { min: 1, default: 60_000 },
      'job-size': { min: 1, default: 10_000 },
      users: { min: 1, default: 4 },
      'chain-tokens': { min: 1, default: 4 },
      'poll-pause-ms': { min: 0, default: 200 },
      'chain-poll-ms': { min: 0, default: 100 },
      workers: { min: 1 },
    },
    switches: ['dist'],
  }
)
const SECONDS = args.seconds
const POLLERS = args.pollers
const JOB_SIZE = args['job-size']
const USERS = args.users
const CHAIN_TOKENS = args['chain-tokens']
const WORKERS = args.workers

const dataDir = mkdtempSync(join(tmpdir(), 'soak-'))
const adminToken = `soak-admin-${randomBytes(16).toString('hex')}`
const traffic = new Traffic()
let server: ServerProcess | undefined
let cleaned = false
function cleanup (): void {
  if (cleaned) return
  cleaned = true
  server?.kill()
  traffic.destroy()
  rmSync(dataDir, { recursive: true, force: true })
}
process.once('SIGINT', () => {
  cleanup()
  process.exit(130)
})

let rssTimer: NodeJS.Timeout | undefined
let exitCode = 1
try {
  const data = await seedDataSet(dataDir, FIRM, TYPE, args.objects)
  const N = data.docs.length
  const expectedPages = Math.max(1, Math.ceil(N / JOB_SIZE))

  // The server, with only the configuration the soak sets.
  const port = await freePort()
  const base = new URL(`http://127.0.0.1:${port}`)
  const started = startServerProcess({
    config: {
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'warn',
      EXPORT_JOB_SIZE: String(JOB_SIZE),
      ...(WORKERS === undefined ? {} : { EXPORT_WORKERS: String(WORKERS) }),
    },
    dist: args.dist,
    maxLogSamples: MAX_SAMPLES,
    onUnexpectedExit: ({ code, signal }) => traffic.sample(`the server exited unexpectedly (code ${code}, signal ${signal})`),
  })
  server = started
  // Peak RSS of the server process (main thread + export worker threads), Linux only.
  let peakRss = 0
  rssTimer = setInterval(() => {
    const rss = processRss(started.pid)
    if (rss > peakRss) peakRss = rss
  }, 250)

  const ready0 = performance.now()
  await waitReady(new URL('/readyz', base), 60_000, () => {
    const exit = started.exit()
    return exit ? `the server exited during start-up: ${JSON.stringify(exit)}\n${started.log.samples.join('\n')}` : undefined
  })
  console.log(`server ${base.origin} (pid ${started.pid}, ${started.args.join(' ')}) ready in ${fmt(performance.now() - ready0)} ms; ` +
    `DATA_DIR=${dataDir} EXPORT_JOB_SIZE=${fmt(JOB_SIZE)} EXPORT_WORKERS=${WORKERS ?? `default (${Math.max(1, availableParallelism() - 1)})`}; ${availableParallelism()} CPUs, node ${process.version}`)

  // Principals through the admin API: a firm, USERS users, one token per poller.
  const admin = adminClient(base, adminToken)
  await admin.putFirm(FIRM, 'Soak Corp')
  const users: UserState[] = []
  for (let u = 0; u < USERS; u++) {
    const created = await admin.createUser(`soak user ${u + 1}`, [FIRM])
    users.push({ n: u + 1, userId: created.userId, chainTokens: [created.token], pollerTokens: [], next: 0, latest: null })
  }
  const wanted: Array<{ user: UserState, chain: boolean }> = []
  for (const user of users) for (let i = 1; i < CHAIN_TOKENS; i++) wanted.push({ user, chain: true })
  for (let p = 0; p < POLLERS; p++) wanted.push({ user: users[p % USERS], chain: false })
  for (let i = 0; i < wanted.length; i += 16) {
    await Promise.all(wanted.slice(i, i + 16).map(async ({ user, chain }) => {
      const token = await admin.issueToken(user.userId)
      ;(chain ? user.chainTokens : user.pollerTokens).push(token)
    }))
  }
  console.log(`admin API: firm '${FIRM}', ${USERS} users, ${USERS * CHAIN_TOKENS} chain tokens, ${POLLERS} poller tokens`)

  // The soak.
  const loopDelay = loopDelayMeter()
  loopDelay.enable()
  const serverCpu0 = processCpuSeconds(started.pid)
  const clientCpu0 = process.cpuUsage()
  const t0 = performance.now()
  traffic.soak(true, t0)
  const deadline = t0 + SECONDS * 1000
  const left = (): number => deadline - performance.now()
  const watchdog = setTimeout(() => {
    console.error(`watchdog: the soak did not finish ${WATCHDOG_GRACE_MS / 1000} s after its deadline; giving up`)
    cleanup()
    process.exit(1)
  }, SECONDS * 1000 + WATCHDOG_GRACE_MS)
  watchdog.unref()
  const ctx: SoakContext = {
    base,
    firm: FIRM,
    type: TYPE,
    traffic,
    data,
    users,
    expectedPages,
    pollPauseMs: args['poll-pause-ms'],
    chainPollMs: args['chain-poll-ms'],
    left,
    pause: (ms) => sleep(Math.max(0, Math.min(left(), ms))),
  }
  const chains: ChainOutcome[] = []

  console.log(`soaking for ${SECONDS} s: ${POLLERS} pollers (pause ${ctx.pollPauseMs} ms), ${USERS} users each running export chains ` +
    `(${fmt(N)} objects, ${expectedPages} pages of ≤ ${fmt(JOB_SIZE)}, polled every ${ctx.chainPollMs} ms)`)
  const progress = setInterval(() => {
    const total = [...traffic.requests.values()].reduce((a, b) => a + b, 0)
    const done = chains.filter((c) => c.end === 'exact').length
    console.log(`  t=${((performance.now() - t0) / 1000).toFixed(0)} s: ${fmt(total)} requests, ${traffic.errorCount()} errors, ${traffic.fiveXx} 5xx, ${done} exact chains`)
  }, 10_000)
  await Promise.all([
    ...Array.from({ length: POLLERS }, (_, i) => poller(ctx, i)),
    ...users.map((u) => chainLoop(ctx, u, chains)),
  ])
  clearInterval(progress)
  const wallMs = performance.now() - t0
  const serverCores = (processCpuSeconds(started.pid) - serverCpu0) / (wallMs / 1000)
  const clientCpu = process.cpuUsage(clientCpu0)
  const clientCores = (clientCpu.user + clientCpu.system) / 1000 / wallMs
  traffic.soak(false)
  loopDelay.disable()
  clearTimeout(watchdog)

  // Stop the server, then the report.
  const stop = await started.stop(STOP_TIMEOUT_MS)
  clearInterval(rssTimer)
  const passed = report({
    seconds: SECONDS,
    pollers: POLLERS,
    objects: N,
    jobSize: JOB_SIZE,
    wallMs,
    traffic,
    chains,
    users,
    serverCores,
    clientCores,
    peakRss,
    serverLog: started.log,
    stop,
    loopDelay: loopDelay.delays(),
  })
  exitCode = passed ? 0 : 1
} catch (err) {
  console.error(`soak aborted: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  if (server?.log.samples.length) console.error(`server output:\n  ${server.log.samples.join('\n  ')}`)
  exitCode = 1
} finally {
  clearInterval(rssTimer)
  if (server && !server.exit()) await server.stop(STOP_TIMEOUT_MS)
  cleanup()
}
process.exit(exitCode)
