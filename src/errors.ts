/**
 * The one table from error code to HTTP status and title. Codes are stable forever once
 * shipped; a test checks this table against the spec's ErrorCode enum.
 */
export const ERRORS = {
  UNAUTHENTICATED: { status: 401, title: 'Unauthenticated' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  VALIDATION_FAILED: { status: 400, title: 'Validation failed' },
  INVALID_CURSOR: { status: 400, title: 'Invalid cursor' },
  INVALID_SIGNATURE: { status: 403, title: 'Invalid signature' },
  EXPORT_ALREADY_ACTIVE: { status: 409, title: 'An export is already active' },
  FILE_EXPIRED: { status: 410, title: 'File expired' },
  RANGE_NOT_SATISFIABLE: { status: 416, title: 'Range not satisfiable' },
  PRECONDITION_FAILED: { status: 412, title: 'Precondition failed' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency key reused' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  URI_TOO_LONG: { status: 414, title: 'URI too long' },
  HEADERS_TOO_LARGE: { status: 431, title: 'Request headers too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  OBJECT_TOO_LARGE: { status: 413, title: 'Object too large' },
  SERVICE_UNAVAILABLE: { status: 503, title: 'Service unavailable' },
  INTERNAL: { status: 500, title: 'Internal error' },
} as const

export type ErrorCode = keyof typeof ERRORS

/** Extra problem fields that help the client (`line`, `activeRequestId`, …). */
export type ProblemExtra = Record<string, string | number | boolean | null | object>

/** The one error class. Its HTTP status comes from ERRORS, never from the call site. */
export class AppError extends Error {
  readonly status: number
  constructor (readonly code: ErrorCode, readonly detail?: string, readonly extra: ProblemExtra = {}, options?: { cause?: unknown }) {
    super(detail ?? ERRORS[code].title, options)
    this.name = 'AppError'
    this.status = ERRORS[code].status
  }
}

/** The RFC 9457 problem `type` URI of a code. */
export function problemType (code: ErrorCode): string {
  return `urn:bulk-export:problem:${code.toLowerCase().replaceAll('_', '-')}`
}
