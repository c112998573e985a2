import { createHash } from 'node:crypto'
import { AppError } from '../errors.js'
import type { ExportsStore } from '../store/exports-store.js'

/** How long an Idempotency-Key keeps answering with the same request. */
const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000

/** What a start asks for, as a hash: the same key with another request is refused. */
export function requestHash (firmId: string, objectType: string, cursor: string | null): string {
  return createHash('sha256').update(JSON.stringify([firmId, objectType, cursor])).digest('hex')
}

/**
 * The job an Idempotency-Key already names, when it is fresh and was used for the same
 * request; a stale key is forgotten. Throws IDEMPOTENCY_KEY_REUSED for another request.
 */
export async function replay (store: ExportsStore, userId: string, key: string, hash: string, now: number): Promise<string | undefined> {
  const previous = await store.selectJobByIdempotencyKey(userId, key)
  if (!previous) return undefined
  if (previous.createdAt < now - IDEMPOTENCY_WINDOW_MS) {
    await store.clearIdempotencyKey(previous.id)
    return undefined
  }
  if (previous.requestHash !== hash) {
    throw new AppError('IDEMPOTENCY_KEY_REUSED',
      `the Idempotency-Key '${key}' was used with a different request (${previous.id}); use a new key for a new request`,
      { requestId: previous.id })
  }
  return previous.id
}
