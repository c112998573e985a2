import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { operations } from '../contract/generated.js'
import { principalOf } from '../plugins/auth.js'
import { perMinute } from '../plugins/rate-limit.js'

/** Absolute base of links handed to clients: PUBLIC_URL, else the request's own origin. */
function baseUrl (request: FastifyRequest): string {
  return request.server.config.publicUrl ?? `${request.protocol}://${request.host}`
}

/** Export requests: start, status, cancel. */
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
      const { view, retryAfter } = await jobs.getStatus(principalOf(request), request.params.requestId, baseUrl(request))
      if (retryAfter !== undefined) reply.header('Retry-After', String(retryAfter))
      reply.header('Cache-Control', 'no-store')
      return view
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
