import type { FastifyInstance, FastifyReply } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { operations } from '../contract/generated.js'
import { AppError } from '../errors.js'
import { principalOf } from '../plugins/auth.js'
import { perMinute } from '../plugins/rate-limit.js'
import { baseUrl } from '../plugins/request-hooks.js'

/** The longest a status read waits (`Prefer: wait=N`). */
const MAX_WAIT_SECONDS = 60

/**
 * The seconds of an RFC 7240 `wait` preference (`Prefer: respond-async, wait=10`), at
 * most MAX_WAIT_SECONDS; undefined when there is none or it is not a whole number (a
 * preference that cannot be understood is ignored).
 */
function preferredWait (header: string | undefined): number | undefined {
  if (header === undefined) return undefined
  for (const preference of header.split(',')) {
    const m = /^\s*wait\s*=\s*"?(\d{1,9})"?\s*(;.*)?$/i.exec(preference)
    if (m) return Math.min(MAX_WAIT_SECONDS, Number(m[1]))
  }
  return undefined
}

/** Aborts when the client goes away before its answer is sent (a long-poll it gave up on). */
function untilGone (reply: FastifyReply): AbortSignal {
  const gone = new AbortController()
  reply.raw.once('close', () => { if (!reply.raw.writableFinished) gone.abort() })
  return gone.signal
}

const DEFAULT_LIST_LIMIT = 20
const MAX_LIST_LIMIT = 100

/** Export requests: start, status (and waiting for it), list, cancel. */
export default async function exportsRoutes (fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const jobs = app.services.exports

  app.route({
    ...operations.startExport,
    config: { ...operations.startExport.config, rateLimit: perMinute(app.config.rateLimitStartsPerMinute) },
    handler: async (request, reply) => {
      const { firmId, objectType } = request.params
      const started = await jobs.startExport(principalOf(request), firmId, objectType, request.body?.cursor, request.headers['idempotency-key'])
      return reply.header('Location', `${baseUrl(request)}/api/v1/request/${started.requestId}`).send(started)
    },
  })

  app.route({
    ...operations.getRequest,
    config: { ...operations.getRequest.config, rateLimit: perMinute(app.config.rateLimitPollsPerMinute) },
    handler: async (request, reply) => {
      const wait = preferredWait(request.headers.prefer)
      const signal = wait ? untilGone(reply) : undefined
      const { view, retryAfter, held } = await jobs.getStatus(principalOf(request), request.params.requestId, baseUrl(request), (wait ?? 0) * 1000, signal)
      if (wait !== undefined && held) reply.header('Preference-Applied', `wait=${wait}`)
      reply.header('Vary', 'Prefer')
      if (retryAfter !== undefined) reply.header('Retry-After', String(retryAfter))
      reply.header('Cache-Control', 'no-store')
      return view
    },
  })

  app.route({
    ...operations.listRequests,
    config: { ...operations.listRequests.config, rateLimit: perMinute(app.config.rateLimitPollsPerMinute) },
    handler: async (request, reply) => {
      const { status, firmId, objectType, limit, cursor } = request.query
      const statuses = status === undefined ? undefined : Array.isArray(status) ? status : [status]
      const size = limit === undefined ? DEFAULT_LIST_LIMIT : Number(limit)
      if (size < 1 || size > MAX_LIST_LIMIT) throw new AppError('VALIDATION_FAILED', `limit must be from 1 to ${MAX_LIST_LIMIT}`)
      const list = await jobs.listRequests(principalOf(request), { statuses, firmId, objectType }, size, cursor, baseUrl(request))
      reply.header('Cache-Control', 'no-store')
      return { requests: list.views.map((v) => v.view), nextCursor: list.nextCursor }
    },
  })

  app.route({
    ...operations.cancelRequest,
    handler: async (request, reply) => {
      const { view } = await jobs.cancel(principalOf(request), request.params.requestId, baseUrl(request))
      return reply.code(202).send(view)
    },
  })
}
