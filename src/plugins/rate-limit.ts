import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from '../errors.js'

/**
 * Per-token rate limits, for the routes that set `config.rateLimit`. Counted after
 * authentication (preHandler), so each token has its own budget; in this process's memory.
 */
export default fp(async function rateLimitPlugin (app: FastifyInstance) {
  await app.register(rateLimit, {
    global: false,
    hook: 'preHandler',
    keyGenerator: (request) => request.principal?.tokenId ?? request.ip,
    errorResponseBuilder: (_request, context) =>
      new AppError('RATE_LIMITED', `rate limit of ${context.max} requests per minute exceeded; retry in ${Math.ceil(context.ttl / 1000)} seconds`),
  })
}, { name: 'rate-limit' })

/** A route's `config.rateLimit`: `max` requests per token per minute. */
export function perMinute (max: number): { max: number, timeWindow: number } {
  return { max, timeWindow: 60_000 }
}
