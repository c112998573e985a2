import type { RequestStatus } from '../contract/generated.js'
import type { ExportJob } from '../store/exports-store.js'
import type { Signer } from './signing.js'

/** How long a download link works after a status read (capped by the file's expiry). */
const DOWNLOAD_LINK_SECONDS = 3600

/** What a status read answers: the body, and when to poll again while the job runs. */
export interface StatusView {
  view: RequestStatus
  /** Seconds; set while the job is Pending or InProgress. */
  retryAfter?: number
}

function iso (ms: number): string {
  return new Date(ms).toISOString()
}

/** The signed download URL of a completed job's file, valid for an hour at most. */
function fileUrl (signer: Signer, baseUrl: string, job: ExportJob, now: number): string {
  const fileExpires = Math.floor((job.expiresAt ?? 0) / 1000)
  const expires = Math.min(fileExpires, Math.floor(now / 1000) + DOWNLOAD_LINK_SECONDS)
  return `${baseUrl}/api/v1/files/${job.id}?expires=${expires}&sig=${signer.signDownload(job.id, expires)}`
}

/**
 * The status of a job as the contract's RequestStatus. A Completed one carries a freshly
 * signed download link; a Pending one a Retry-After that grows with the queue ahead.
 */
export function statusView (job: ExportJob, at: { baseUrl: string, now: number, signer: Signer, pendingAhead: number, workers: number }): StatusView {
  const view: RequestStatus = {
    requestId: job.id,
    status: job.status,
    firmId: job.firmId,
    objectType: job.objectType,
    createdAt: iso(job.createdAt),
    progress: job.total === null ? { processed: job.processed } : { processed: job.processed, total: job.total },
  }
  switch (job.status) {
    case 'Pending':
      return { view, retryAfter: Math.min(30, 1 + Math.floor(at.pendingAhead / Math.max(1, at.workers))) }
    case 'InProgress':
      return { view, retryAfter: 1 }
    case 'Completed':
      view.result = {
        total: job.total ?? 0,
        fileUrl: fileUrl(at.signer, at.baseUrl, job, at.now),
        nextCursor: job.nextCursor,
        bytes: job.bytes ?? 0,
        sha256: job.sha256 ?? '',
        expiresAt: iso(job.expiresAt ?? 0),
      }
      return { view }
    case 'Failed':
      view.error = { code: job.errorCode ?? 'EXPORT_FAILED', message: job.errorMessage ?? 'the export failed' }
      return { view }
  }
}
