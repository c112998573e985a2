import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from '../errors.js'
import { uriTooLong } from './errors.js'

/**
 * A Host header as RFC 9110 allows it: a DNS name (with the `_` and `~` of RFC 3986
 * reg-names, as in container service names), an IPv4 address or a bracketed IPv6 address,
 * and an optional port. Nothing else reaches the links handed to clients.
 */
const HOST = /^(?:[A-Za-z0-9_~](?:[A-Za-z0-9_~-]{0,61}[A-Za-z0-9_~])?(?:\.[A-Za-z0-9_~](?:[A-Za-z0-9_~-]{0,61}[A-Za-z0-9_~])?)*\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::(\d{1,5}))?$/

function validHost (host: string, httpVersion: string): boolean {
  if (!host) return httpVersion === '1.0'
  const m = HOST.exec(host)
  return m !== null && (m[1] === undefined || Number(m[1]) <= 65535)
}

/**
 * Absolute base of links handed to clients (fileUrl, Location, the docs' server):
 * PUBLIC_URL, else the request's own origin (behind TRUST_PROXY, as the proxy names it).
 */
export function baseUrl (request: FastifyRequest): string {
  const { publicUrl } = request.server.config
  if (publicUrl) return publicUrl
  // An HTTP/1.0 request may come without a Host: name the address it reached.
  const host = request.host || `${request.socket.localAddress?.includes(':') ? `[${request.socket.localAddress}]` : request.socket.localAddress}:${request.socket.localPort}`
  return `${request.protocol}://${host}`
}

declare module 'fastify' {
  interface FastifyInstance {
    /** True once a stop has begun: readiness fails and answers close their connection. */
    stopping: boolean
  }
}

/**
 * What every request gets before its route: its id echoed as X-Request-Id, the URL
 * limit (MAX_URL_BYTES) and a valid Host. While stopping, answers close their connection, so keep-alive
 * clients do not hold the stop open (Fastify closes only idle connections).
 */
export default fp(async function requestHooksPlugin (app: FastifyInstance) {
  const { maxUrlBytes } = app.config
  app.decorate('stopping', false)
  app.addHook('preClose', async () => { app.stopping = true })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Request-Id', request.id)
    if (request.url.length > maxUrlBytes) throw uriTooLong(maxUrlBytes)
    // RFC 9112: a request whose Host is not a valid host[:port] (or an HTTP/1.1 one without
    // any) is answered 400; so is a forwarded scheme other than http or https.
    if (!validHost(request.host, request.raw.httpVersion)) {
      throw new AppError('VALIDATION_FAILED', 'the Host header is not a valid host[:port]; send the name (or address) and port of this server')
    }
    if (request.protocol !== 'http' && request.protocol !== 'https') {
      throw new AppError('VALIDATION_FAILED', 'X-Forwarded-Proto must be http or https')
    }
  })
  app.addHook('onSend', async (_request, reply) => {
    if (app.stopping) reply.header('Connection', 'close')
  })
}, { name: 'request-hooks' })
