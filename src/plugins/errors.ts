import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, ERRORS, problemType, type ErrorCode } from '../errors.js'

/** Fastify's own 4xx errors, by status, mapped onto our codes. */
const BY_STATUS: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
  503: 'SERVICE_UNAVAILABLE',
}

interface ValidationItem { instancePath: string, message?: string, params?: Record<string, unknown> }

function describeValidation (error: FastifyError): { detail: string, errors: Array<{ field: string, message: string }> } {
  const items = (error.validation ?? []) as ValidationItem[]
  const where = error.validationContext ?? 'request'
  const errors = items.map((v) => {
    const extra = v.params?.additionalProperty
    const field = extra === undefined ? v.instancePath || '/' : `${v.instancePath}/${String(extra)}`
    return { field, message: v.message ?? 'is invalid' }
  })
  const detail = errors.map((e) => `${where}${e.field === '/' ? '' : e.field} ${e.message}`).join('; ')
  return { detail: detail || error.message, errors }
}

/** Turns any error into the AppError that describes it to the client. */
export function toAppError (error: FastifyError | AppError | Error): AppError {
  if (error instanceof AppError) return error
  const fe = error as FastifyError
  if (fe.validation) {
    const { detail, errors } = describeValidation(fe)
    return new AppError('VALIDATION_FAILED', detail, { errors })
  }
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new AppError('UNSUPPORTED_MEDIA_TYPE', 'this operation does not take a body of this Content-Type; see /docs')
  }
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new AppError('PAYLOAD_TOO_LARGE', 'the request body is larger than this operation allows')
  if (fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new AppError('VALIDATION_FAILED', 'the body is empty but Content-Type is application/json')
  if (fe instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new AppError('VALIDATION_FAILED', 'the body is not valid JSON')
  }
  // The database stayed locked past busy_timeout, or the disk is full: nothing was
  // written, and the client may retry.
  if (typeof fe.code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(fe.code)) {
    return new AppError('SERVICE_UNAVAILABLE', 'the database is busy; nothing was changed, retry in a moment')
  }
  if (typeof fe.code === 'string' && fe.code.startsWith('SQLITE_FULL')) {
    return new AppError('SERVICE_UNAVAILABLE', "the server's disk is full; nothing was changed")
  }
  const status = fe.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    // Fastify's own client errors (bad URL, proto keys, …): their messages hold no secrets.
    return new AppError(BY_STATUS[status] ?? 'VALIDATION_FAILED', fe.message)
  }
  return new AppError('INTERNAL')
}

/** Sends an AppError as an RFC 9457 problem. */
export function sendProblem (request: FastifyRequest, reply: FastifyReply, err: AppError): FastifyReply {
  if (err.code === 'UNAUTHENTICATED') reply.header('WWW-Authenticate', 'Bearer')
  if (err.code === 'SERVICE_UNAVAILABLE') reply.header('Retry-After', '1')
  const body = {
    type: problemType(err.code),
    title: ERRORS[err.code].title,
    status: err.status,
    detail: err.code === 'INTERNAL'
      ? `an unexpected error occurred; it has been logged with request id ${request.id}`
      : err.detail ?? ERRORS[err.code].title,
    instance: request.url.split('?')[0],
    code: err.code,
    ...err.extra,
  }
  return reply.code(err.status).type('application/problem+json; charset=utf-8').send(body)
}

/** Every error and every unknown route answers an RFC 9457 problem+json. */
export default fp(async function errorsPlugin (app: FastifyInstance) {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const appError = toAppError(error)
    if (appError.status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ code: appError.code }, 'request refused')
    return sendProblem(request, reply, appError)
  })
  app.setNotFoundHandler((request, reply) => {
    return sendProblem(request, reply, new AppError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}; see /docs`))
  })
}, { name: 'errors' })
