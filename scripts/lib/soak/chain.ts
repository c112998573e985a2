/** The soak's export chains: each user follows one chain after another, each checked line by line. */
import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { assertLocal } from '../local-url.js'
import { IdOrder, LineSplitter, lineId } from '../ndjson-lines.js'
import type { SoakContext, StatusView, UserState } from './context.js'
import { json, retryAfterMs } from './traffic.js'

/** How a chain ended: exact (every check held), inexact, failed, or abandoned at the deadline. */
export type ChainEnd = 'exact' | 'inexact' | 'failed' | 'abandoned'

/** One chain's outcome, for the report. */
export interface ChainOutcome { user: number, end: ChainEnd, pages: number, lines: number, ms: number, problems: string[] }

/** Runs `user`'s chains one after the other until the deadline. */
export async function chainLoop (ctx: SoakContext, user: UserState, chains: ChainOutcome[]): Promise<void> {
  while (ctx.left() > 0) {
    const outcome = await chain(ctx, user)
    chains.push(outcome)
    if (outcome.end === 'failed') await ctx.pause(1000) // do not spin on a failing server
  }
}

/**
 * One export chain of a user, checked against the seed: every seeded id exactly once,
 * byte for byte, ids strictly ascending, lines == result.total, bytes == result.bytes,
 * sha256 == result.sha256, the expected number of pages, nextCursor null only at the end.
 */
async function chain (ctx: SoakContext, user: UserState): Promise<ChainOutcome> {
  const { traffic, base, left, data } = ctx
  const N = data.docs.length
  const c0 = performance.now()
  const problems: string[] = []
  const problem = (text: string): void => { if (problems.length < 5) problems.push(text); else if (problems.length === 5) problems.push('…') }
  const seen = new Uint8Array(N)
  const order = new IdOrder()
  let lines = 0
  let pages = 0
  let cursor: string | null = null
  let active: { id: string, token: string } | null = null
  const token = (): string => user.chainTokens[user.next++ % user.chainTokens.length]
  const end = (e: ChainEnd): ChainOutcome => ({ user: user.n, end: e, pages, lines, ms: performance.now() - c0, problems })
  const abandon = async (): Promise<ChainOutcome> => {
    // Free the user's slot (and the worker) rather than leave the job to the shutdown.
    if (active) await traffic.call('cancel', 'DELETE', new URL(`/api/v1/request/${active.id}`, base), { token: active.token, expect: [202] })
    return end(problems.length ? 'inexact' : 'abandoned')
  }

  do {
    if (left() <= 0) return abandon()
    // Start (a 429 waits for Retry-After).
    let requestId: string | undefined
    for (;;) {
      const tok = token()
      const reply = await traffic.call('start', 'POST', new URL(`/api/v1/idm/${ctx.firm}/${ctx.type}/export`, base), { token: tok, body: cursor === null ? {} : { cursor } })
      if (!reply) return end('failed')
      if (reply.status === 429) {
        if (left() <= 0) return abandon()
        await ctx.pause(retryAfterMs(reply))
        continue
      }
      if (reply.status !== 200) {
        problem(`start: ${reply.status} ${reply.body.subarray(0, 200).toString()}`)
        return end('failed')
      }
      requestId = json<{ requestId?: string }>(reply)?.requestId
      if (!requestId || reply.headers.location !== new URL(`/api/v1/request/${requestId}`, base).href) {
        problem(`start: no requestId or a wrong Location (${reply.headers.location})`)
        return end('failed')
      }
      active = { id: requestId, token: tok }
      user.latest = requestId
      break
    }

    // Poll until finished.
    let view: StatusView | undefined
    let lastProcessed = -1
    for (;;) {
      if (left() <= 0) return abandon()
      const reply = await traffic.call('chainPoll', 'GET', new URL(`/api/v1/request/${requestId}`, base), { token: token() })
      if (!reply) return end('failed')
      if (reply.status === 200) {
        view = json<StatusView>(reply)
        const processed = view?.progress?.processed ?? -1
        if (processed < lastProcessed) {
          traffic.progressDecreased++
          traffic.sample(`chain ${requestId}: progress.processed went from ${lastProcessed} to ${processed}`)
        }
        lastProcessed = processed
        if (view?.status === 'Completed') break
        if (view?.status === 'Failed') {
          problem(`job ${requestId} Failed: ${JSON.stringify(view.error)}`)
          active = null
          return end('failed')
        }
      } else if (reply.status !== 429) {
        return end('failed')
      }
      await ctx.pause(reply.status === 429 ? retryAfterMs(reply) : ctx.chainPollMs)
    }
    active = null
    const result = view?.result
    if (!result) {
      problem(`job ${requestId}: Completed without a result`)
      return end('inexact')
    }
    pages++

    // Download (no Authorization: the URL is signed), checking every line.
    const hash = createHash('sha256')
    let bytes = 0
    let fileLines = 0
    const splitter = new LineSplitter((line) => {
      fileLines++
      lines++
      const id = lineId(line)
      if (id === undefined) {
        problem(`page ${pages} line ${fileLines}: no id (${line.subarray(0, 80).toString()})`)
        return
      }
      const before = order.previous
      if (!order.next(id)) problem(`page ${pages} line ${fileLines}: id ${id} does not follow ${before}`)
      const idx = data.index.get(id)
      if (idx === undefined) {
        problem(`page ${pages} line ${fileLines}: unknown id ${id}`)
        return
      }
      if (seen[idx]) problem(`page ${pages} line ${fileLines}: id ${id} exported twice in the chain`)
      seen[idx] = 1
      if (!data.docs[idx].equals(line)) problem(`page ${pages} line ${fileLines}: id ${id}: the JSON differs from the seeded object`)
    })
    const reply = await traffic.call('download', 'GET', assertLocal(result.fileUrl), {
      onChunk: (chunk) => {
        hash.update(chunk)
        bytes += chunk.length
        splitter.push(chunk)
      },
    })
    if (!reply) return end('failed')
    if (reply.status !== 200) return end('failed')
    const rest = splitter.end()
    if (reply.headers['content-type'] !== 'application/x-ndjson') problem(`page ${pages}: Content-Type ${reply.headers['content-type']}`)
    if (rest !== null) problem(`page ${pages}: the file does not end with \\n (${rest.length} bytes after the last newline)`)
    const sha = hash.digest('hex')
    if (sha !== result.sha256) problem(`page ${pages}: sha256 ${sha} != result.sha256 ${result.sha256}`)
    if (bytes !== result.bytes) problem(`page ${pages}: ${bytes} bytes != result.bytes ${result.bytes}`)
    if (fileLines !== result.total) problem(`page ${pages}: ${fileLines} lines != result.total ${result.total}`)
    if (fileLines === 0 && N > 0) problem(`page ${pages}: an empty page`)
    cursor = result.nextCursor
    if (cursor !== null && pages >= ctx.expectedPages) {
      problem(`page ${pages}: nextCursor is still set after ${ctx.expectedPages} pages`)
      return end('inexact')
    }
  } while (cursor !== null)

  if (lines !== N) problem(`the chain has ${lines} lines, ${N} were seeded`)
  if (pages !== ctx.expectedPages) problem(`the chain has ${pages} pages, expected ${ctx.expectedPages}`)
  let missing = 0
  for (let i = 0; i < N; i++) if (!seen[i]) missing++
  if (missing) problem(`${missing} seeded ids never exported`)
  return end(problems.length ? 'inexact' : 'exact')
}
