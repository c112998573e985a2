import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { uriTooLong } from './errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** True once a stop has begun: readiness fails and answers close their connection. */
    stopping: boolean
  }
}

/**
 * What every request gets before its route: its id echoed as X-Request-Id and the URL
 * limit (MAX_URL_BYTES). While stopping, answers close their connection, so keep-alive
 * clients do not hold the stop open (Fastify closes only idle connections).
 */
export default fp(async function requestHooksPlugin (app: FastifyInstance) {
  const { maxUrlBytes } = app.config
  app.decorate('stopping', false)
  app.addHook('preClose', async () => { app.stopping = true })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Request-Id', request.id)
    if (request.url.length > maxUrlBytes) throw uriTooLong(maxUrlBytes)
  })
  app.addHook('onSend', async (_request, reply) => {
    if (app.stopping) reply.header('Connection', 'close')
  })
}, { name: 'request-hooks' })
