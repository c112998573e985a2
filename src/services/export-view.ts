import type { JobErrorCode, Recreate, RequestStatus } from '../contract/generated.js'
import type { ExportJob } from '../store/exports-store.js'
import type { Signer } from './signing.js'

/** How long a download link works after a status read (capped by the file's expiry). */
const DOWNLOAD_LINK_SECONDS = 3600

/** Whether starting the same page again can succeed, by failure code (see JobErrorCode in the spec). */
const RETRYABLE: Record<JobErrorCode, boolean> = {
  CANCELLED: true,
  EXPORT_WRITE_FAILED: true,
  EXPORT_READ_FAILED: true,
  EXPORT_FAILED: false,
}

/** What a status read answers: the body, and when to poll again while the job runs. */
export interface StatusView {
  view: RequestStatus
  /** Seconds; set while the job is Pending or InProgress. */
  retryAfter?: number
}

/** What a view needs besides the job. */
export interface ViewContext {
  /** Absolute base of the links it hands out. */
  baseUrl: string
  now: number
  signer: Signer
  /** While Pending: how many queued jobs start before it. */
  jobsAhead: number
  workers: number
}

/** Timestamps formatted lately: a polled job shows the same four on every read. */
const recentIso = new Map<number, string>()
const RECENT_ISO_MAX = 10_000

function iso (ms: number): string {
  let text = recentIso.get(ms)
  if (text === undefined) {
    text = new Date(ms).toISOString()
    if (recentIso.size >= RECENT_ISO_MAX) recentIso.clear()
    recentIso.set(ms, text)
  }
  return text
}

/** The signed download URL of a completed job's file, valid for an hour at most. */
function fileUrl (at: ViewContext, job: ExportJob): string {
  const fileExpires = Math.floor((job.expiresAt ?? 0) / 1000)
  const expires = Math.min(fileExpires, Math.floor(at.now / 1000) + DOWNLOAD_LINK_SECONDS)
  return `${at.baseUrl}/api/v1/files/${job.id}?expires=${expires}&sig=${at.signer.signDownload(job.id, expires)}`
}

/** The request that exports a job's page again. */
export function recreateOf (job: Pick<ExportJob, 'firmId' | 'objectType' | 'cursorIn'>, baseUrl: string): Recreate {
  return { method: 'POST', url: `${baseUrl}/api/v1/idm/${job.firmId}/${job.objectType}/export`, body: { cursor: job.cursorIn } }
}

/** Whether a completed job's file is gone (deleted, or past its expiry). */
export function fileGone (job: Pick<ExportJob, 'fileName' | 'expiresAt'>, now: number): boolean {
  return job.fileName === null || (job.expiresAt ?? 0) <= now
}

function progress (job: ExportJob, now: number): RequestStatus['progress'] {
  const p: RequestStatus['progress'] = job.total === null ? { processed: job.processed } : { processed: job.processed, total: job.total }
  if (job.status === 'InProgress' && job.startedAt !== null && job.processed > 0 && now > job.startedAt) {
    const rate = job.processed / ((now - job.startedAt) / 1000)
    p.ratePerSecond = Math.round(rate)
    if (job.total !== null) p.etaSeconds = Math.ceil(Math.max(0, job.total - job.processed) / rate)
  }
  return p
}

/**
 * The status of a job as the contract's RequestStatus: the page it exports, where it
 * stands, and its outcome. A Completed one carries a freshly signed download link, or,
 * its file gone, how to export the page again; a Pending one a Retry-After that grows
 * with the queue ahead.
 */
export function statusView (job: ExportJob, at: ViewContext): StatusView {
  const view: RequestStatus = {
    requestId: job.id,
    status: job.status,
    firmId: job.firmId,
    objectType: job.objectType,
    cursor: job.cursorIn,
    createdAt: iso(job.createdAt),
    progress: progress(job, at.now),
  }
  switch (job.status) {
    case 'Pending':
      view.queue = { jobsAhead: at.jobsAhead }
      return { view, retryAfter: Math.min(30, 1 + Math.floor(at.jobsAhead / Math.max(1, at.workers))) }
    case 'InProgress':
      return { view, retryAfter: 1 }
    case 'Completed': {
      const gone = fileGone(job, at.now)
      view.result = {
        total: job.total ?? 0,
        fileUrl: gone ? null : fileUrl(at, job),
        fileExpired: gone,
        ...(gone ? { recreate: recreateOf(job, at.baseUrl) } : {}),
        nextCursor: job.nextCursor,
        ...(job.remaining === null ? {} : { remaining: job.remaining }),
        bytes: job.bytes ?? 0,
        sha256: job.sha256 ?? '',
        expiresAt: iso(job.expiresAt ?? 0),
      }
      return { view }
    }
    case 'Failed': {
      const code = job.errorCode ?? 'EXPORT_FAILED'
      view.error = { code, message: job.errorMessage ?? 'the export failed', retryable: RETRYABLE[code] }
      return { view }
    }
  }
}
