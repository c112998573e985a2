import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Socket } from 'node:net'
import type { Config } from '../config.js'
import { AppError, ERRORS, problemType, type ErrorCode } from '../errors.js'
import { schemaFields, suggestField } from './field-hints.js'

/** Fastify's own 4xx errors, by status, mapped onto our codes. */
const BY_STATUS: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
  503: 'SERVICE_UNAVAILABLE',
}

interface ValidationItem { instancePath: string, message?: string, params?: Record<string, unknown> }

function describeValidation (error: FastifyError, request: FastifyRequest | undefined) {
  const items = (error.validation ?? []) as ValidationItem[]
  const where = error.validationContext ?? 'request'
  const known = request && where === 'body' ? schemaFields(request, 'body') : []
  const errors = items.map((v) => {
    const extra = v.params?.additionalProperty
    if (extra === undefined) return { field: v.instancePath || '/', message: v.message ?? 'is invalid' }
    // A misnamed field: say so, and which one was probably meant.
    const suggestion = v.instancePath === '' ? suggestField(String(extra), known) : undefined
    return { field: `${v.instancePath}/${String(extra)}`, message: 'is not a field of this operation', ...(suggestion ? { suggestion } : {}) }
  })
  const detail = errors.map((e) => `${where}${e.field === '/' ? '' : e.field} ${e.message}${'suggestion' in e ? `; did you mean '${e.suggestion}'?` : ''}`).join('; ')
  return { detail: detail || error.message, errors }
}

/** What to tell a client whose body has a Content-Type the operation does not take. */
function unsupportedMediaType (request: FastifyRequest | undefined): AppError {
  const takes = request?.routeOptions.config?.bodyTypes ?? []
  const got = request?.headers['content-type']?.split(';')[0].trim()
  const form = got === 'application/x-www-form-urlencoded'
    ? ": curl -d sends that unless told otherwise; add -H 'Content-Type: " + (takes[0] ?? 'application/json') + "'"
    : ''
  return new AppError('UNSUPPORTED_MEDIA_TYPE', takes.length
    ? `this operation takes a body of Content-Type ${takes.join(' or ')}, not ${got ?? 'none'}${form}`
    : 'this operation takes no body; send none (see /docs)')
}

/** Turns any error into the AppError that describes it to the client. */
function toAppError (error: FastifyError | AppError | Error, request?: FastifyRequest): AppError {
  if (error instanceof AppError) return error
  const fe = error as FastifyError
  if (fe.validation) {
    const { detail, errors } = describeValidation(fe, request)
    return new AppError('VALIDATION_FAILED', detail, { errors })
  }
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return unsupportedMediaType(request)
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new AppError('PAYLOAD_TOO_LARGE', 'the request body is larger than this operation allows')
  if (fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new AppError('VALIDATION_FAILED', 'the body is empty but Content-Type is application/json')
  if (fe instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new AppError('VALIDATION_FAILED', 'the body is not valid JSON')
  }
  const status = fe.statusCode
  // @fastify/send's answers to a file request's preconditions and ranges.
  if (status === 412) return new AppError('PRECONDITION_FAILED', 'a precondition of the request (If-Match, If-Unmodified-Since) does not hold for this file; read it again without it, or with the current ETag')
  if (status === 416) return new AppError('RANGE_NOT_SATISFIABLE', 'the requested range lies outside the file; result.bytes has its size')
  if (status !== undefined && status >= 400 && status < 500) {
    // Fastify's own client errors (bad URL, proto keys, …): their messages hold no secrets.
    // A client error that wraps a system error (its message may name a path on the
    // server) gets its code's title instead.
    const code = BY_STATUS[status] ?? 'VALIDATION_FAILED'
    return new AppError(code, (fe as { syscall?: unknown }).syscall === undefined ? fe.message : ERRORS[code].title)
  }
  return new AppError('INTERNAL')
}

/** The RFC 9457 body of a problem. */
function problemBody (code: ErrorCode, detail: string, extra: object = {}, instance?: string) {
  return {
    type: problemType(code),
    title: ERRORS[code].title,
    status: ERRORS[code].status,
    detail,
    ...(instance === undefined ? {} : { instance }),
    code,
    ...extra,
  }
}

/** Sends an AppError as an RFC 9457 problem. */
function sendProblem (request: FastifyRequest, reply: FastifyReply, err: AppError): FastifyReply {
  if (err.code === 'UNAUTHENTICATED') reply.header('WWW-Authenticate', 'Bearer')
  if (err.code === 'SERVICE_UNAVAILABLE') reply.header('Retry-After', '1')
  const detail = err.code === 'INTERNAL'
    ? `an unexpected error occurred; it has been logged with request id ${request.id}`
    : err.detail ?? ERRORS[err.code].title
  const body = problemBody(err.code, detail, err.extra, request.url.split('?')[0])
  return reply.code(err.status).type('application/problem+json; charset=utf-8').send(body)
}

/** The URL limit (MAX_URL_BYTES) as a problem. */
export function uriTooLong (maxUrlBytes: number): AppError {
  return new AppError('URI_TOO_LONG', `the URL is longer than ${maxUrlBytes} bytes (MAX_URL_BYTES)`)
}

/**
 * Fastify's `frameworkErrors`: a URL the router cannot take (bad percent-encoding, an
 * over-long segment) is a problem like any other error. The router refuses it before the
 * onRequest hooks, so the URL limit is checked here too; and the URL is not echoed: its
 * query may hold a `sig`.
 */
export function frameworkErrors (config: Pick<Config, 'maxUrlBytes'>): NonNullable<FastifyServerOptions['frameworkErrors']> {
  return (error, request, reply) => {
    if (request.url.length > config.maxUrlBytes) return sendProblem(request, reply, uriTooLong(config.maxUrlBytes))
    if (error.code === 'FST_ERR_BAD_URL' || error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      return sendProblem(request, reply, new AppError('VALIDATION_FAILED', 'the URL path is not valid: bad percent-encoding, or a path segment longer than 1024 characters'))
    }
    return sendProblem(request, reply, toAppError(error, request))
  }
}

/**
 * Node refuses oversized headers (16 KiB) and malformed requests before Fastify sees
 * them; they are answered as problems too, on the raw socket, which is then closed.
 */
export function clientErrorHandler (err: NodeJS.ErrnoException, socket: Socket): void {
  const code = err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'VALIDATION_FAILED'
  const { status, title } = ERRORS[code]
  const body = JSON.stringify(problemBody(code, code === 'HEADERS_TOO_LARGE' ? 'the request headers are larger than 16 KiB' : 'the request is not valid HTTP'))
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  } else {
    socket.destroy(err)
  }
}

/** Every error and every unknown route answers an RFC 9457 problem+json. */
export default fp(async function errorsPlugin (app: FastifyInstance) {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const appError = toAppError(error, request)
    if (appError.status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ code: appError.code }, 'request refused')
    return sendProblem(request, reply, appError)
  })
  app.setNotFoundHandler((request, reply) => {
    return sendProblem(request, reply, new AppError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}; see /docs`))
  })
}, { name: 'errors' })
