import type { FastifyServerOptions, RawRequestDefaultExpression } from 'fastify'
import { randomUUID } from 'node:crypto'
import type { Config } from './config.js'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/** Query parameters whose values are secrets and never reach a log line. */
const SECRET_PARAMS = /([?&](?:sig|signature|token|access_token)=)[^&]*/gi

/** The request URL as it may be logged. */
function redactUrl (url: string): string {
  return url.replace(SECRET_PARAMS, '$1[REDACTED]')
}

/** Logger options: JSON lines, request ids, no credentials. */
export function loggerOptions (config: Pick<Config, 'logLevel'>): FastifyServerOptions['logger'] {
  return {
    level: config.logLevel,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'token', '*.token'],
      censor: '[REDACTED]',
    },
    serializers: {
      req: (req: { method: string, url: string, ip?: string, socket?: { remoteAddress?: string } }) => ({
        method: req.method,
        url: redactUrl(req.url),
        remoteAddress: req.ip ?? req.socket?.remoteAddress,
      }),
    },
  }
}

/** A request's id: the client's X-Request-Id when it is a sane one, else a new one. */
export function requestIdOf (req: RawRequestDefaultExpression): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : `req-${randomUUID()}`
}
