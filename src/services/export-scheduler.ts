import { setTimeout as sleep } from 'node:timers/promises'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import type { Config } from '../config.js'
import type { FileStorage } from '../files/storage.js'
import type { ExportJob } from '../store/exports-store.js'
import type { Store } from '../store/store.js'
import type { ExportOutcome, ExportTask } from '../worker/export-task.js'
import type { ExportEvents } from './export-events.js'
import type { Signer } from './signing.js'

/** Runs one task on the worker pool; aborting the signal stops it. */
export type RunTask = (task: ExportTask, options: { transferList: MessagePort[], signal: AbortSignal }) => Promise<ExportOutcome>

/** How many times a job is started before a crashing worker fails it for good. */
export const MAX_ATTEMPTS = 3
const PROGRESS_EVERY = 5000
/** How many times the end of a job is written before giving up (a restart recovers it). */
const RECORD_ATTEMPTS = 30

interface Log {
  debug: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  error: (obj: object, msg: string) => void
}

export interface SchedulerDeps {
  store: Store
  /** Told of every change to a job row, for the requests that wait on it. */
  events: ExportEvents
  storage: FileStorage
  signer: Signer
  runTask: RunTask
  config: Pick<Config, 'exportJobSize' | 'exportWorkers' | 'fileTtlSeconds'>
  log: Log
  now?: () => number
}

/**
 * The queue of export jobs: claims Pending jobs oldest first while workers are free,
 * hands each to the worker pool, records progress and the outcome, and after a crash
 * puts interrupted jobs back (failing those interrupted MAX_ATTEMPTS times). The main
 * thread is the only writer of job rows.
 */
export function createExportScheduler (deps: SchedulerDeps) {
  const { store, storage, signer, config, log, events } = deps
  const now = deps.now ?? Date.now
  const running = new Map<string, { abort: AbortController, done: Promise<void> }>()
  /** Jobs being aborted because of a cancel or a shutdown, not a fault. */
  const aborting = new Set<string>()
  let stopped = true
  // Read through a function: `stopped` changes while a claim is awaited.
  const isStopped = (): boolean => stopped
  /** The pump in progress, if any. */
  let pumping: Promise<void> | undefined
  let pumpAgain = false
  /** Jobs cancelled while a claim was in flight: the claim may have returned one of them. */
  const cancelledWhileClaiming = new Set<string>()

  async function finish (job: ExportJob, outcome: ExportOutcome): Promise<void> {
    const fileName = storage.fileNameOf(job.id)
    if (!outcome.ok) {
      await storage.remove(fileName)
      await store.scheduler.markJobFailed(job.id, outcome.code, outcome.message, now())
      return
    }
    // Where the chain stands after this page; unknown when it began with a c1 cursor.
    const offset = job.startOffset === null ? undefined : job.startOffset + outcome.total
    const more = outcome.hasMore && outcome.lastId !== null
    const nextCursor = more
      ? signer.encodeCursor({ firmId: job.firmId, objectType: job.objectType, after: outcome.lastId as string, offset })
      : null
    // An estimate (the collection may have changed during the chain), but never 0 while
    // something follows: only the last page says 0.
    const remaining = !more ? 0 : offset === undefined ? null : Math.max(1, await store.objects.countObjects(job.firmId, job.objectType) - offset)
    const finishedAt = now()
    const done = await store.scheduler.markJobCompleted(job.id, {
      total: outcome.total,
      fileName,
      bytes: outcome.bytes,
      sha256: outcome.sha256,
      nextCursor,
      remaining,
      finishedAt,
      expiresAt: finishedAt + config.fileTtlSeconds * 1000,
    })
    // Cancelled while the worker wrote: the file belongs to no completed job.
    if (!done) await storage.remove(fileName)
  }

  async function crashed (job: ExportJob, err: unknown): Promise<void> {
    if (aborting.has(job.id)) {
      // Cancelled (already Failed: this changes nothing) or stopped by a shutdown: back to
      // the queue without counting the attempt.
      await store.scheduler.markJobPendingRefunded(job.id)
      return
    }
    if (job.attempts >= MAX_ATTEMPTS) {
      log.error({ err, requestId: job.id }, 'export failed on every attempt')
      await store.scheduler.markJobFailed(job.id, 'EXPORT_FAILED', `the export worker failed ${job.attempts} times; the server log has the details (request id ${job.id})`, now())
    } else {
      log.warn({ err, requestId: job.id, attempt: job.attempts }, 'export worker failed; retrying the job')
      await store.scheduler.markJobPending(job.id)
    }
  }

  /**
   * Writes the end of a job, retrying while the database is busy or full, so a finished
   * job is recorded (and its user's slot freed) as soon as the database allows.
   */
  async function record (jobId: string, write: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await write()
        return
      } catch (err) {
        if (attempt >= RECORD_ATTEMPTS) {
          log.error({ err, requestId: jobId }, 'could not record the end of an export; it is recovered at the next start')
          return
        }
        log.warn({ err, requestId: jobId, attempt }, 'could not record the end of an export yet; retrying')
        await sleep(1000)
      }
    }
  }

  function run (job: ExportJob): void {
    const abort = new AbortController()
    const { port1, port2 } = new MessageChannel()
    port1.on('message', (m: { expected?: number, processed?: number }) => {
      // Progress is best effort: a busy database must not break the job (or the process).
      store.scheduler.updateJobProgress(job.id, m).then(() => { events.changed(job.id) }, (err: unknown) => {
        log.debug({ err, requestId: job.id }, 'progress not recorded')
      })
    })
    const task: ExportTask = {
      source: store.readerSource,
      firmId: job.firmId,
      objectType: job.objectType,
      after: job.afterId ?? '',
      limit: config.exportJobSize,
      ...storage.paths(job.id, job.attempts),
      port: port2,
      progressEvery: PROGRESS_EVERY,
    }
    const done = deps.runTask(task, { transferList: [port2], signal: abort.signal })
      .then((outcome) => record(job.id, () => finish(job, outcome)), async (err: unknown) => {
        await storage.discardAttempt(job.id, job.attempts)
        await record(job.id, () => crashed(job, err))
      })
      .finally(() => {
        events.changed(job.id)
        port1.close()
        running.delete(job.id)
        aborting.delete(job.id)
        void pump()
      })
    running.set(job.id, { abort, done })
  }

  /**
   * Starts queued jobs, oldest first, while workers are free. One pump runs at a time; a
   * claim is awaited, so a cancel or a stop can arrive while it is in flight: a job
   * cancelled meanwhile is not started, and one claimed as a stop began goes back to the
   * queue with its attempt refunded.
   */
  async function pumpQueue (): Promise<void> {
    do {
      pumpAgain = false
      while (!isStopped() && running.size < config.exportWorkers) {
        const job = await store.scheduler.claimNextPendingJob(now())
        if (!job) break
        const cancelled = cancelledWhileClaiming.has(job.id)
        cancelledWhileClaiming.clear()
        if (cancelled) continue
        if (isStopped()) {
          await store.scheduler.markJobPendingRefunded(job.id)
          break
        }
        run(job)
        events.changed(job.id)
      }
    } while (pumpAgain && !isStopped())
  }

  function pump (): Promise<void> {
    if (pumping) {
      pumpAgain = true
      return pumping
    }
    pumping = pumpQueue().catch((err: unknown) => {
      // A busy or full database: the queue is intact, try again shortly.
      log.warn({ err }, 'could not start queued exports; retrying in a second')
      setTimeout(() => { void pump() }, 1000).unref()
    }).finally(() => {
      pumping = undefined
      cancelledWhileClaiming.clear()
    })
    return pumping
  }

  return {
    /**
     * At start-up, before `start`: fails jobs interrupted MAX_ATTEMPTS times and puts the
     * other interrupted ones back in the queue. Returns what it did.
     */
    recover: (): Promise<{ failed: number, requeued: number }> => store.scheduler.requeueInterruptedJobs(MAX_ATTEMPTS,
      `the export was interrupted ${MAX_ATTEMPTS} times (server crashes or kills while it ran); start it again, and check the server log if it keeps failing`,
      now()),

    /** Starts scheduling. */
    start (): void {
      stopped = false
      void pump()
    },

    /** A job was queued: start it if a worker is free. */
    wake (): void {
      void pump()
    },

    /**
     * Stops a job's worker after its row was marked cancelled; a job being claimed right
     * now is not started at all.
     */
    abort (jobId: string): void {
      const active = running.get(jobId)
      if (active) {
        aborting.add(jobId)
        active.abort.abort()
      } else if (pumping) {
        cancelledWhileClaiming.add(jobId)
      }
    },

    /** Starts no more jobs (a stop has begun); running ones go on. */
    pause (): void {
      stopped = true
    },

    /**
     * Stops scheduling, gives running jobs up to graceMs to finish, then stops the rest;
     * those go back to the queue (attempt not counted) and resume at the next start.
     */
    async stop (graceMs: number): Promise<void> {
      stopped = true
      // A claim in flight ends first: its job either runs (and is waited for) or goes back.
      await pumping
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

export type ExportScheduler = ReturnType<typeof createExportScheduler>
