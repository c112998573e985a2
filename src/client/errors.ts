import type { components } from './schema.js'

/** An RFC 9457 problem as the server sends it. */
export type Problem = components['schemas']['Problem']

/**
 * A failure the client did not retry away: a permanent answer (a bad token, no access,
 * an invalid cursor, a job that failed for good) or retries that ran out. `problem` is
 * the server's answer when there was one.
 */
export class BulkExportError extends Error {
  constructor (message: string, readonly status?: number, readonly problem?: Problem, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'BulkExportError'
  }

  /** The problem's stable code (`UNAUTHENTICATED`, `INVALID_CURSOR`, …), or the job's error code. */
  get code (): string | undefined {
    return this.problem?.code
  }
}

/** A problem body as an error, its detail first: the server says what to do. */
export function problemError (status: number, body: unknown, what: string): BulkExportError {
  const problem = typeof body === 'object' && body !== null && 'code' in body ? body as Problem : undefined
  const detail = problem?.detail ?? (typeof body === 'string' ? body.slice(0, 200) : '')
  return new BulkExportError(`${what}: ${status} ${problem?.code ?? ''}${detail ? ` — ${detail}` : ''}`.trim(), status, problem)
}
