import helmet from '@fastify/helmet'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { randomUUID } from 'node:crypto'
import type { Config } from './config.js'
import { AppError, ERRORS, problemType } from './errors.js'
import authPlugin from './plugins/auth.js'
import dbPlugin from './plugins/db.js'
import docsPlugin from './plugins/docs.js'
import exportPoolPlugin from './plugins/export-pool.js'
import { jsonBodyParser } from './plugins/json-body.js'
import errorsPlugin, { sendProblem, toAppError } from './plugins/errors.js'
import adminRoutes from './routes/admin.js'
import exportsRoutes from './routes/exports.js'
import objectsRoutes from './routes/objects.js'
import operationsRoutes from './routes/operations.js'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/** Query parameters whose values are secrets and never reach a log line. */
const SECRET_PARAMS = /([?&](?:sig|signature|token|access_token)=)[^&]*/gi

/** The request URL as it may be logged. */
export function redactUrl (url: string): string {
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

/**
 * Builds the application: plugins first (errors, store, auth, docs), then the routes of
 * each area, explicitly and in order. Listening is left to the caller.
 */
export async function buildApp (config: Config, options: { logger?: FastifyServerOptions['logger'] } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config),
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : `req-${randomUUID()}`
    },
    ajv: {
      customOptions: {
        // Unknown properties are rejected by the schemas, never silently dropped.
        removeAdditional: false,
        coerceTypes: false,
        keywords: ['example'],
      },
    },
    // Bound what a client can make the server hold before a route sees the request.
    bodyLimit: 1024 * 1024,
    routerOptions: { maxParamLength: 1024 },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // A URL Fastify cannot decode (bad percent-encoding, an over-long segment) is a problem
    // like any other error. The router refuses it before the onRequest hooks, so the URL
    // limit is checked here too; and the URL is not echoed: its query may hold a `sig`.
    frameworkErrors: (error, request, reply) => {
      if (request.url.length > config.maxUrlBytes) {
        return sendProblem(request, reply, new AppError('URI_TOO_LONG', `the URL is longer than ${config.maxUrlBytes} bytes (MAX_URL_BYTES)`))
      }
      if (error.code === 'FST_ERR_BAD_URL' || error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
        return sendProblem(request, reply, new AppError('VALIDATION_FAILED', 'the URL path is not valid: bad percent-encoding, or a path segment longer than 1024 characters'))
      }
      return sendProblem(request, reply, toAppError(error))
    },
    // Node refuses oversized headers (16 KiB) and malformed requests before Fastify sees
    // them; answer those as problems too.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      const tooLarge = err.code === 'HPE_HEADER_OVERFLOW'
      const code = tooLarge ? 'HEADERS_TOO_LARGE' : 'VALIDATION_FAILED'
      const status = tooLarge ? 431 : 400
      const body = JSON.stringify({
        type: problemType(code), title: ERRORS[code].title, status, code,
        detail: tooLarge ? 'the request headers are larger than 16 KiB' : 'the request is not valid HTTP',
      })
      if (socket.writable) {
        socket.end(`HTTP/1.1 ${status} ${ERRORS[code].title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
      } else {
        socket.destroy(err)
      }
    },
  })
  // While stopping, answers close their connection, so keep-alive clients do not hold the
  // stop open (Fastify closes only idle connections).
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('Connection', 'close')
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Request-Id', request.id)
    if (request.url.length > config.maxUrlBytes) {
      throw new AppError('URI_TOO_LONG', `the URL is longer than ${config.maxUrlBytes} bytes (MAX_URL_BYTES)`)
    }
  })

  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBodyParser(app))
  // JSON operations take JSON only: a text/plain body is a 415, not a string failing the schema.
  app.removeContentTypeParser('text/plain')
  // Operations whose request body is optional validate a missing body as an empty one.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && request.routeOptions.config?.optionalBody) request.body = {}
  })

  await app.register(errorsPlugin)
  // Security headers on every response; the docs set their own CSP (swagger-ui staticCSP).
  // HSTS is left to a TLS-terminating proxy: this server speaks plain http.
  await app.register(helmet, { contentSecurityPolicy: false, crossOriginEmbedderPolicy: false, hsts: false })
  await app.register(dbPlugin, { config })
  await app.register(exportPoolPlugin)
  await app.register(authPlugin)
  await app.register(docsPlugin)

  await app.register(operationsRoutes)
  await app.register(adminRoutes)
  await app.register(objectsRoutes)
  await app.register(exportsRoutes)
  return app
}
