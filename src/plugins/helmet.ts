import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import helmet, { type HelmetOptions } from 'helmet'
import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * The headers helmet sets with these options. None depends on the request (no CSP
 * nonces), so helmet runs once, here, instead of as ten middleware calls per request
 * (which cost the status route about 6 % of its CPU).
 */
function securityHeaders (options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {}
  const res = {
    setHeader: (name: string, value: unknown) => { headers[name.toLowerCase()] = String(value) },
    removeHeader: (name: string) => { delete headers[name.toLowerCase()] },
  }
  let done = false
  helmet(options)({} as IncomingMessage, res as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err
    done = true
  })
  if (!done) throw new Error('helmet did not set its headers synchronously')
  return headers
}

/**
 * Security headers on every response, helmet's defaults. The docs set their own CSP
 * (swagger-ui's staticCSP); HSTS is left to a TLS-terminating proxy: this server speaks
 * plain http.
 */
export default fp(async function helmetPlugin (app: FastifyInstance) {
  const headers = securityHeaders({ contentSecurityPolicy: false, crossOriginEmbedderPolicy: false, strictTransportSecurity: false })
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers)
    done()
  })
}, { name: 'helmet' })
