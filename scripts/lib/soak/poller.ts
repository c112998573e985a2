/** One of the soak's status pollers: a closed loop on its own keep-alive connection. */
import { setTimeout as sleep } from 'node:timers/promises'
import type { SoakContext, StatusView } from './context.js'
import { json, retryAfterMs } from './traffic.js'

const STATUSES = ['Pending', 'InProgress', 'Completed', 'Failed']

/**
 * Poller `i` (of user i mod users) until the deadline: GET its user's latest job and
 * GET /healthz, then a pause. A status body of the wrong shape and a decreasing
 * progress.processed count as errors.
 */
export async function poller (ctx: SoakContext, i: number): Promise<void> {
  const { traffic, base, left } = ctx
  const user = ctx.users[i % ctx.users.length]
  const token = user.pollerTokens[Math.floor(i / ctx.users.length)]
  const own = traffic.ownConnection()
  let seenId: string | null = null
  let seenProcessed = -1
  await sleep(Math.random() * ctx.pollPauseMs) // spread the loops
  while (left() > 0) {
    const id = user.latest
    if (id !== null) {
      const reply = await traffic.call('status', 'GET', new URL(`/api/v1/request/${id}`, base), { token, latency: traffic.statusLatency, agent: own })
      if (reply?.status === 200) {
        const view = json<StatusView>(reply)
        const processed = view?.progress?.processed
        if (!view || view.requestId !== id || !STATUSES.includes(view.status) || typeof processed !== 'number') {
          traffic.unexpected.set('status body', (traffic.unexpected.get('status body') ?? 0) + 1)
          traffic.sample(`status ${id}: unexpected body ${reply.body.subarray(0, 300).toString()}`)
        } else {
          if (id === seenId && processed < seenProcessed) {
            traffic.progressDecreased++
            traffic.sample(`status ${id}: progress.processed went from ${seenProcessed} to ${processed}`)
          }
          seenId = id
          seenProcessed = processed
        }
      }
      if (reply?.status === 429) await ctx.pause(retryAfterMs(reply))
    }
    if (left() <= 0) break
    await traffic.call('healthz', 'GET', new URL('/healthz', base), { latency: traffic.healthLatency, agent: own })
    await ctx.pause(ctx.pollPauseMs)
  }
}
