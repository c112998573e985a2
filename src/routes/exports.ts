import compress from '@fastify/compress'
import rateLimit from '@fastify/rate-limit'
import fastifyStatic, { type SendOptions } from '@fastify/static'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { operations } from '../contract/generated.js'
import { AppError } from '../errors.js'
import { principalOf } from '../plugins/auth.js'

/** Export jobs: start, status, download. */
export default async function exportsRoutes (fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const jobs = app.exportJobs

  /** Absolute base of links handed to clients: PUBLIC_URL, else the request's own origin. */
  function baseUrl (request: FastifyRequest): string {
    return app.config.publicUrl ?? `${request.protocol}://${request.host}`
  }

  // Per-token limits, counted after authentication so each token has its own budget.
  await app.register(rateLimit, {
    global: false,
    hook: 'preHandler',
    keyGenerator: (request) => request.principal?.tokenId ?? request.ip,
    errorResponseBuilder: (_request, context) =>
      new AppError('RATE_LIMITED', `rate limit of ${context.max} requests per minute exceeded; retry in ${Math.ceil(context.ttl / 1000)} seconds`),
  })
  const perMinute = (max: number) => ({ max, timeWindow: 60_000 })

  app.route({
    ...operations.startExport,
    config: { ...operations.startExport.config, rateLimit: perMinute(app.config.rateLimitStartsPerMinute) },
    handler: async (request, reply) => {
      const { firmId, objectType } = request.params
      const started = jobs.startExport(principalOf(request), firmId, objectType, request.body?.cursor, request.headers['idempotency-key'])
      return reply.header('Location', `${baseUrl(request)}/api/v1/request/${started.requestId}`).send(started)
    },
  })

  app.route({
    ...operations.getRequest,
    config: { ...operations.getRequest.config, rateLimit: perMinute(app.config.rateLimitPollsPerMinute) },
    handler: async (request, reply) => {
      const { view, retryAfter } = jobs.getStatus(principalOf(request), request.params.requestId, baseUrl(request))
      if (retryAfter !== undefined) reply.header('Retry-After', String(retryAfter))
      reply.header('Cache-Control', 'no-store')
      return view as never
    },
  })

  app.route({
    ...operations.cancelRequest,
    handler: async (request, reply) => {
      const { view } = jobs.cancel(principalOf(request), request.params.requestId, baseUrl(request))
      return reply.code(202).send(view as never)
    },
  })

  await app.register(async function downloads (scope) {
    await scope.register(fastifyStatic, { root: app.filesDir, serve: false })
    // gzip at level 1: export files compress ~3.5:1 and level 6 costs 1.5x more CPU for
    // little gain (BASELINE.md). Ranges are never compressed (offsets are of the file).
    // The options sit on the route: a route's `compress` replaces the plugin's options
    // wholesale (defaults included), and the default types leave out application/x-ndjson.
    await scope.register(compress, { global: false })
    scope.withTypeProvider<TypeBoxTypeProvider>().route({
      ...operations.downloadFile,
      compress: { encodings: ['gzip'], zlibOptions: { level: 1 }, customTypes: /^application\/x-ndjson$/ },
      handler: async (request, reply) => {
        const { requestId } = request.params
        const fileName = jobs.resolveDownload(requestId, request.query.expires, request.query.sig)
        reply.header('Content-Type', 'application/x-ndjson')
        reply.header('Content-Disposition', `attachment; filename="${fileName}"`)
        reply.header('Cache-Control', 'private, no-cache')
        // 1 MiB reads instead of 64 KiB: each read is a turn of the event loop, and under
        // polling load small reads cut download speed by an order of magnitude.
        // (@fastify/send takes highWaterMark; @fastify/static's types do not list it.)
        const options: SendOptions & { highWaterMark: number } = { contentType: false, cacheControl: false, highWaterMark: 1 << 20 }
        return reply.sendFile(fileName, options)
      },
    })
  })
}
