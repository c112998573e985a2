import { createHash, randomUUID } from 'node:crypto'
import { readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import type { Config } from '../config.js'
import { AppError } from '../errors.js'
import { isActiveJobConflict, type ExportsStore, type JobRow } from '../store/exports-store.js'
import type { ExportOutcome, ExportTask } from '../worker/export-task.js'
import { requireFirmAccess, type Principal } from './access.js'
import type { Signer } from './signing.js'

/** Runs one task on the worker pool; aborting the signal stops it. */
export type RunTask = (task: ExportTask, options: { transferList: MessagePort[], signal: AbortSignal }) => Promise<ExportOutcome>

/** How many times a job is started before a crashing worker fails it for good. */
export const MAX_ATTEMPTS = 3
/** How long a download link works after a status read (capped by the file's expiry). */
export const DOWNLOAD_LINK_SECONDS = 3600
const PROGRESS_EVERY = 5000
/** How many times the end of a job is written before giving up (a restart recovers it). */
const RECORD_ATTEMPTS = 30
/** How long an Idempotency-Key keeps answering with the same request. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000

export interface ExportsDeps {
  store: ExportsStore
  signer: Signer
  runTask: RunTask
  config: Pick<Config, 'exportJobSize' | 'exportWorkers' | 'fileTtlSeconds'>
  dbPath: string
  filesDir: string
  log: { debug: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void, error: (obj: object, msg: string) => void }
  now?: () => number
}

function iso (ms: number): string {
  return new Date(ms).toISOString()
}

/**
 * The export job lifecycle: start (one active job per user, enforced by the database),
 * a FIFO scheduler feeding the worker pool, progress and completion records, status
 * views and download-link checks. The main thread is the only writer of job rows.
 */
export function createExportsService (deps: ExportsDeps) {
  const { store, signer, config } = deps
  const now = deps.now ?? Date.now
  const running = new Map<string, { abort: AbortController, done: Promise<void> }>()
  /** Jobs being aborted because of a cancel or a shutdown, not a fault. */
  const aborting = new Set<string>()
  let stopped = false

  function fileNameOf (jobId: string): string {
    return `${jobId}.ndjson`
  }

  function removeFile (name: string): void {
    try { rmSync(join(deps.filesDir, name), { force: true }) } catch {}
  }

  function finish (job: JobRow, outcome: ExportOutcome): void {
    if (!outcome.ok) {
      removeFile(fileNameOf(job.id))
      store.markJobFailed(job.id, outcome.code, outcome.message, now())
      return
    }
    const nextCursor = outcome.hasMore && outcome.lastId !== null
      ? signer.encodeCursor({ firmId: job.firmId, objectType: job.objectType, after: outcome.lastId })
      : null
    const finishedAt = now()
    const fileName = fileNameOf(job.id)
    const done = store.markJobCompleted(job.id, {
      total: outcome.total, fileName, bytes: outcome.bytes, sha256: outcome.sha256, nextCursor,
      finishedAt, expiresAt: finishedAt + config.fileTtlSeconds * 1000,
    })
    if (!done) removeFile(fileName)
  }

  function crashed (job: JobRow, err: unknown): void {
    if (aborting.has(job.id)) {
      // Cancelled (already Failed: this changes nothing) or stopped by a shutdown: back to
      // the queue without counting the attempt.
      store.markJobPendingRefunded(job.id)
      return
    }
    if (job.attempts >= MAX_ATTEMPTS) {
      deps.log.error({ err, requestId: job.id }, 'export failed on every attempt')
      store.markJobFailed(job.id, 'EXPORT_FAILED', `the export worker failed ${job.attempts} times; the server log has the details (request id ${job.id})`, now())
    } else {
      deps.log.warn({ err, requestId: job.id, attempt: job.attempts }, 'export worker failed; retrying the job')
      store.markJobPending(job.id)
    }
  }

  /**
   * Writes the end of a job, retrying while the database is busy or full, so a finished
   * job is recorded (and its user's slot freed) as soon as the database allows.
   */
  async function record (jobId: string, write: () => void): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        store.noWait(write)
        return
      } catch (err) {
        if (attempt >= RECORD_ATTEMPTS) {
          deps.log.error({ err, requestId: jobId }, 'could not record the end of an export; it is recovered at the next start')
          return
        }
        deps.log.warn({ err, requestId: jobId, attempt }, 'could not record the end of an export yet; retrying')
        await sleep(1000)
      }
    }
  }

  function start (job: JobRow): void {
    const abort = new AbortController()
    const { port1, port2 } = new MessageChannel()
    port1.on('message', (m: { expected?: number, processed?: number }) => {
      // Progress is best effort: a busy database must not break the job (or the process).
      try {
        store.noWait(() => {
          if (typeof m.expected === 'number') store.updateJobExpected(job.id, m.expected)
          if (typeof m.processed === 'number') store.updateJobProgress(job.id, m.processed)
        })
      } catch (err) {
        deps.log.debug({ err, requestId: job.id }, 'progress not recorded')
      }
    })
    const task: ExportTask = {
      jobId: job.id,
      dbPath: deps.dbPath,
      firmId: job.firmId,
      objectType: job.objectType,
      after: job.afterId ?? '',
      limit: config.exportJobSize,
      tmpPath: join(deps.filesDir, `.${job.id}.${job.attempts}.tmp`),
      finalPath: join(deps.filesDir, fileNameOf(job.id)),
      port: port2,
      progressEvery: PROGRESS_EVERY,
    }
    const done = deps.runTask(task, { transferList: [port2], signal: abort.signal })
      .then((outcome) => record(job.id, () => finish(job, outcome)), async (err) => {
        removeFile(`.${job.id}.${job.attempts}.tmp`)
        // Stopped after its rename: the file belongs to no completed job.
        removeFile(fileNameOf(job.id))
        await record(job.id, () => crashed(job, err))
      })
      .finally(() => {
        port1.close()
        running.delete(job.id)
        aborting.delete(job.id)
        pump()
      })
    running.set(job.id, { abort, done })
  }

  function requestHash (firmId: string, objectType: string, cursor: string | null): string {
    return createHash('sha256').update(JSON.stringify([firmId, objectType, cursor])).digest('hex')
  }

  /** The job an Idempotency-Key already names, when it is fresh and for the same request. */
  function replay (userId: string, key: string, hash: string): string | undefined {
    const previous = store.selectJobByIdempotencyKey(userId, key)
    if (!previous) return undefined
    if (previous.createdAt < now() - IDEMPOTENCY_WINDOW_MS) {
      store.clearIdempotencyKey(previous.id)
      return undefined
    }
    if (previous.requestHash !== hash) {
      throw new AppError('IDEMPOTENCY_KEY_REUSED',
        `the Idempotency-Key '${key}' was used with a different request (${previous.id}); use a new key for a new request`,
        { requestId: previous.id })
    }
    return previous.id
  }

  /** Deletes files past their expiry and records it; returns how many were removed. */
  function sweep (): number {
    const expired = store.selectExpiredFiles(now())
    for (const { id, fileName } of expired) {
      removeFile(fileName)
      store.markJobFileRemoved(id, now())
    }
    return expired.length
  }

  /** Starts queued jobs, oldest first, while workers are free. */
  function pump (): void {
    try {
      while (!stopped && running.size < config.exportWorkers) {
        const job = store.noWait(() => store.claimNextPendingJob(now()))
        if (!job) return
        start(job)
      }
    } catch (err) {
      // A busy or full database: the queue is intact, try again shortly.
      deps.log.warn({ err }, 'could not start queued exports; retrying in a second')
      setTimeout(pump, 1000).unref()
    }
  }

  /** The status view of a job; a Completed one carries a freshly signed download link. */
  function statusView (job: JobRow, baseUrl: string): { view: Record<string, unknown>, retryAfter?: number } {
    const view: Record<string, unknown> = {
      requestId: job.id,
      status: job.status,
      firmId: job.firmId,
      objectType: job.objectType,
      createdAt: iso(job.createdAt),
      progress: job.total === null ? { processed: job.processed } : { processed: job.processed, total: job.total },
    }
    let retryAfter: number | undefined
    if (job.status === 'Pending') {
      const ahead = store.countPendingBefore(job.createdAt)
      retryAfter = Math.min(30, 1 + Math.floor(ahead / Math.max(1, config.exportWorkers)))
    } else if (job.status === 'InProgress') {
      retryAfter = 1
    } else if (job.status === 'Completed') {
      const fileExpires = Math.floor((job.expiresAt ?? 0) / 1000)
      const expires = Math.min(fileExpires, Math.floor(now() / 1000) + DOWNLOAD_LINK_SECONDS)
      const sig = signer.signDownload(job.id, expires)
      view.result = {
        total: job.total ?? 0,
        fileUrl: `${baseUrl}/api/v1/files/${job.id}?expires=${expires}&sig=${sig}`,
        nextCursor: job.nextCursor,
        bytes: job.bytes ?? 0,
        sha256: job.sha256 ?? '',
        expiresAt: iso(job.expiresAt ?? 0),
      }
    } else {
      view.error = { code: job.errorCode ?? 'EXPORT_FAILED', message: job.errorMessage ?? 'the export failed' }
    }
    return { view, retryAfter }
  }

  function ownJob (principal: Principal, requestId: string): JobRow {
    const job = store.selectJob(requestId)
    // Another user's request is indistinguishable from one that does not exist.
    if (!job || job.userId !== principal.userId) throw new AppError('NOT_FOUND', `no request '${requestId}'`)
    return job
  }

  return {
    /** Queues an export and returns its id at once; 409 if the user has one active. */
    startExport (principal: Principal, firmId: string, objectType: string, cursor: string | null | undefined, idempotencyKey?: string): { requestId: string } {
      requireFirmAccess(principal, firmId)
      const afterId = cursor == null ? null : signer.decodeCursor(cursor, firmId, objectType)
      const hash = idempotencyKey === undefined ? null : requestHash(firmId, objectType, cursor ?? null)
      if (idempotencyKey !== undefined && hash !== null) {
        const previous = replay(principal.userId, idempotencyKey, hash)
        if (previous) return { requestId: previous }
      }
      const requestId = `export-${randomUUID()}`
      try {
        store.insertJob({
          id: requestId, userId: principal.userId, firmId, objectType, cursorIn: cursor ?? null, afterId,
          idempotencyKey: idempotencyKey ?? null, requestHash: hash, createdAt: now(),
        })
      } catch (err) {
        if (!isActiveJobConflict(err)) throw err
        const activeRequestId = store.selectActiveJobId(principal.userId) ?? null
        throw new AppError('EXPORT_ALREADY_ACTIVE',
          `you already have an export in progress (${activeRequestId}); wait for it to finish before starting another`,
          { activeRequestId })
      }
      pump()
      return { requestId }
    },

    /** The status view of one of the caller's requests, with a fresh download link. */
    getStatus (principal: Principal, requestId: string, baseUrl: string) {
      return statusView(ownJob(principal, requestId), baseUrl)
    },

    /**
     * Cancels a Pending or InProgress job (its slot is free when this returns; the worker
     * is stopped and its partial file removed), or deletes a finished job's file early.
     */
    cancel (principal: Principal, requestId: string, baseUrl: string) {
      const job = ownJob(principal, requestId)
      if (store.markJobCancelled(job.id, now())) {
        const active = running.get(job.id)
        if (active) {
          aborting.add(job.id)
          active.abort.abort()
        }
      } else if (job.status === 'Completed' && job.fileName) {
        removeFile(job.fileName)
        store.markJobFileRemoved(job.id, now())
      }
      return statusView(ownJob(principal, requestId), baseUrl)
    },

    /** Checks a download link and returns the file's name in the files directory. */
    resolveDownload (requestId: string, expires: string, sig: string): string {
      if (!signer.verifyDownload(requestId, expires, sig)) {
        throw new AppError('INVALID_SIGNATURE', 'the download link is not valid; use the fileUrl exactly as the request status returned it')
      }
      const gone = new AppError('FILE_EXPIRED', 'the download link has expired or the file was removed; read the request status again for a fresh fileUrl (or export the page again)')
      if (Number(expires) * 1000 < now()) throw gone
      const job = store.selectJob(requestId)
      if (!job || job.status !== 'Completed' || !job.fileName || (job.expiresAt ?? 0) < now()) throw gone
      try {
        if (!statSync(join(deps.filesDir, job.fileName)).isFile()) throw gone
      } catch {
        throw gone
      }
      return job.fileName
    },

    /**
     * At start-up: fails jobs interrupted MAX_ATTEMPTS times, requeues the other
     * interrupted ones, removes export files no completed job owns, sweeps expired files,
     * and starts the queue.
     */
    resume (): void {
      const { failed, requeued } = store.requeueInterruptedJobs(MAX_ATTEMPTS, now())
      if (failed || requeued) deps.log.warn({ failed, requeued }, 'recovered exports interrupted by a stop or crash')
      const live = store.selectLiveFileNames()
      for (const name of readdirSync(deps.filesDir)) {
        if (name.endsWith('.ndjson') && !live.has(name)) removeFile(name)
      }
      sweep()
      pump()
    },

    sweep,

    /**
     * Stops scheduling, gives running jobs up to graceMs to finish, then stops the rest;
     * those go back to the queue (attempt not counted) and resume at the next start.
     */
    /** Starts no more jobs (a stop has begun); running ones go on. */
    pause (): void {
      stopped = true
    },

    async stop (graceMs: number): Promise<void> {
      stopped = true
      if (running.size === 0) return
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs) })
      await Promise.race([Promise.all([...running.values()].map((r) => r.done)), timeout])
      clearTimeout(timer)
      for (const [id, r] of running) {
        aborting.add(id)
        r.abort.abort()
      }
      await Promise.all([...running.values()].map((r) => r.done))
    },

    runningCount: (): number => running.size,
  }
}

export type ExportsService = ReturnType<typeof createExportsService>
