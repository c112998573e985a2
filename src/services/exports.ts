import { randomUUID } from 'node:crypto'
import type { Config } from '../config.js'
import { AppError } from '../errors.js'
import type { ExportJob, JobFilter } from '../store/exports-store.js'
import type { Store } from '../store/store.js'
import { requireFirmAccess, type Principal } from './access.js'
import type { ExportEvents } from './export-events.js'
import type { ExportScheduler } from './export-scheduler.js'
import { statusView, type StatusView } from './export-view.js'
import type { FilesService } from './files.js'
import { replay, requestHash } from './idempotency.js'
import type { Signer } from './signing.js'

export interface ExportsDeps {
  store: Store
  scheduler: ExportScheduler
  events: ExportEvents
  files: FilesService
  signer: Signer
  config: Pick<Config, 'exportWorkers'>
  now?: () => number
}

/**
 * Export requests as their owners see them: start (one active job per user, enforced by
 * the database; an Idempotency-Key replays a start), status and cancel.
 */
export function createExportsService (deps: ExportsDeps) {
  const { store, scheduler, signer } = deps
  const now = deps.now ?? Date.now

  async function ownJob (principal: Principal, requestId: string): Promise<ExportJob> {
    const job = await store.exports.selectJob(requestId)
    // Another user's request is indistinguishable from one that does not exist.
    if (!job || job.userId !== principal.userId) throw new AppError('NOT_FOUND', `no request '${requestId}'`)
    return job
  }

  async function view (job: ExportJob, baseUrl: string): Promise<StatusView> {
    const jobsAhead = job.status === 'Pending' ? await store.exports.countPendingAhead(job.id) : 0
    return statusView(job, { baseUrl, now: now(), signer, jobsAhead, workers: deps.config.exportWorkers })
  }

  /** The 409 of a user's active job; undefined when it has just ended. */
  async function activeConflict (userId: string): Promise<AppError | undefined> {
    const id = await store.exports.selectActiveJobId(userId)
    const active = id === undefined ? undefined : await store.exports.selectJob(id)
    if (!active || (active.status !== 'Pending' && active.status !== 'InProgress')) return undefined
    return new AppError('EXPORT_ALREADY_ACTIVE',
      `you already have an export in progress: ${active.id} of ${active.firmId}/${active.objectType}; wait for it (GET /api/v1/request/${active.id} with Prefer: wait=60) or cancel it (DELETE) before starting another`,
      { activeRequestId: active.id, activeFirmId: active.firmId, activeObjectType: active.objectType })
  }

  return {
    /**
     * One page of the caller's requests, newest first, that match the filter; `cursor`
     * is the previous page's `nextCursor`.
     */
    async listRequests (principal: Principal, filter: JobFilter, limit: number, cursor: string | undefined, baseUrl: string): Promise<{ views: StatusView[], nextCursor: string | null }> {
      const key = JSON.stringify([[...filter.statuses ?? []].sort(), filter.firmId ?? null, filter.objectType ?? null])
      const after = cursor === undefined ? undefined : signer.decodeListCursor(cursor, principal.userId, key)
      const jobs = await store.exports.selectJobsOfUser(principal.userId, filter, after, limit + 1)
      const page = jobs.slice(0, limit)
      const last = page.at(-1)
      return {
        views: await Promise.all(page.map((job) => view(job, baseUrl))),
        nextCursor: jobs.length > limit && last ? signer.encodeListCursor({ userId: principal.userId, filter: key, createdAt: last.createdAt, id: last.id }) : null,
      }
    },

    /** Queues an export and returns its id at once; 409 if the user has one active. */
    async startExport (principal: Principal, firmId: string, objectType: string, cursor: string | null | undefined, idempotencyKey?: string): Promise<{ requestId: string }> {
      requireFirmAccess(principal, firmId)
      const position = cursor == null ? { after: null, offset: 0 } : signer.decodeCursor(cursor, firmId, objectType)
      const hash = idempotencyKey === undefined ? null : requestHash(firmId, objectType, cursor ?? null)
      if (idempotencyKey !== undefined && hash !== null) {
        const previous = await replay(store.exports, principal.userId, idempotencyKey, hash, now())
        if (previous) return { requestId: previous }
      }
      const job = {
        userId: principal.userId,
        firmId,
        objectType,
        cursorIn: cursor ?? null,
        afterId: position.after,
        startOffset: position.offset ?? null,
        idempotencyKey: idempotencyKey ?? null,
        requestHash: hash,
      }
      // Twice at most: a refusal by a job that ended just after it is not a conflict.
      for (let attempt = 1; ; attempt++) {
        const requestId = `export-${randomUUID()}`
        const outcome = await store.exports.insertJob({ ...job, id: requestId, createdAt: now() })
        if (outcome === 'inserted') {
          scheduler.wake()
          return { requestId }
        }
        if (outcome === 'idempotency-key-exists' && idempotencyKey !== undefined && hash !== null) {
          // A retry of the same start won the race: answer with its request.
          const previous = await replay(store.exports, principal.userId, idempotencyKey, hash, now())
          if (previous) return { requestId: previous }
        }
        const conflict = await activeConflict(principal.userId)
        if (conflict !== undefined) throw conflict
        if (attempt >= 2) throw new AppError('SERVICE_UNAVAILABLE', 'the export could not be queued just now; start it again')
      }
    },

    /**
     * The status view of one of the caller's requests, with a fresh download link. With
     * `waitMs`, an unfinished job's answer waits until it changes (or `waitMs` passes, or
     * `signal` aborts); `held` tells whether it could wait (see ExportEvents.wait).
     */
    async getStatus (principal: Principal, requestId: string, baseUrl: string, waitMs = 0, signal?: AbortSignal): Promise<StatusView & { held: boolean }> {
      const since = deps.events.mark()
      const job = await ownJob(principal, requestId)
      if (waitMs <= 0) return { ...await view(job, baseUrl), held: false }
      const waited = await deps.events.wait(job, since, waitMs, { holder: principal.userId, signal })
      return { ...await view(waited.job, baseUrl), held: waited.held }
    },

    /**
     * Cancels a Pending or InProgress job (its slot is free when this returns; the worker
     * is stopped and its partial file removed), or deletes a finished job's file early.
     */
    async cancel (principal: Principal, requestId: string, baseUrl: string): Promise<StatusView> {
      const job = await ownJob(principal, requestId)
      if (await store.exports.markJobCancelled(job.id, now())) {
        scheduler.abort(job.id)
        deps.events.changed(job.id)
      } else if (job.status === 'Completed' && job.fileName) {
        await deps.files.removeJobFile(job.id, job.fileName)
        deps.events.changed(job.id)
      }
      return view(await ownJob(principal, requestId), baseUrl)
    },
  }
}

export type ExportsService = ReturnType<typeof createExportsService>
