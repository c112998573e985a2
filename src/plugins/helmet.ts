import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/**
 * Security headers on every response. The docs set their own CSP (swagger-ui's
 * staticCSP); HSTS is left to a TLS-terminating proxy: this server speaks plain http.
 */
export default fp(async function helmetPlugin (app: FastifyInstance) {
  await app.register(helmet, { contentSecurityPolicy: false, crossOriginEmbedderPolicy: false, hsts: false })
}, { name: 'helmet' })
