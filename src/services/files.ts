import type { FastifyReply } from 'fastify'
import { AppError } from '../errors.js'
import { FileGoneError, type FileStorage } from '../files/storage.js'
import type { JobFile } from '../store/files-store.js'
import type { Store } from '../store/store.js'
import { fileGone, recreateOf } from './export-view.js'
import type { Signer } from './signing.js'

/** The 410 of a genuine link whose file is gone: when, and how to export the page again. */
function fileGoneProblem (job: JobFile, baseUrl: string): AppError {
  const recreate = recreateOf(job, baseUrl)
  const kept = job.expiresAt === null ? '' : ` (kept until ${new Date(job.expiresAt).toISOString()})`
  return new AppError('FILE_EXPIRED',
    `the file of ${job.id} is gone${kept}; export the page again: POST ${recreate.url} with ${JSON.stringify(recreate.body)}`,
    { requestId: job.id, recreate })
}

/** The 410 of a file that is gone: with how to export it again when its job is known. */
function goneProblem (job: JobFile | undefined, requestId: string, baseUrl: string): AppError {
  return job ? fileGoneProblem(job, baseUrl) : new AppError('FILE_EXPIRED', `the file of ${requestId} is gone`, { requestId })
}

/**
 * Export files once written: download checks, early deletion, the retention sweep and
 * the start-up cleanup of files no job owns.
 */
export function createFilesService (deps: { store: Store, storage: FileStorage, signer: Signer, now?: () => number }) {
  const { store, storage, signer } = deps
  const now = deps.now ?? Date.now

  /** Deletes files past their expiry and records it; returns how many were removed. */
  async function sweep (): Promise<number> {
    const expired = await store.files.selectExpiredFiles(now())
    for (const { id, fileName } of expired) {
      await storage.remove(fileName)
      await store.files.markJobFileRemoved(id, now())
    }
    return expired.length
  }

  return {
    sweep,

    /**
     * Sends a file `resolveDownload` named as the reply's body; one removed since (a cancel,
     * the retention sweep) is the 410 of a file that is gone, with how to export it again.
     */
    async send (reply: FastifyReply, requestId: string, fileName: string, baseUrl: string): Promise<FastifyReply> {
      try {
        return await storage.send(reply, fileName)
      } catch (err) {
        if (!(err instanceof FileGoneError)) throw err
        throw goneProblem(await store.files.selectJobFile(requestId), requestId, baseUrl)
      }
    },

    /**
     * Checks a download link and returns the file's name in the storage. A genuine link
     * whose file is gone answers 410 with how to export the page again; one that merely
     * expired, with where to get a fresh link.
     */
    async resolveDownload (requestId: string, expires: string, sig: string, baseUrl: string): Promise<{ fileName: string, bytes: number }> {
      if (!signer.verifyDownload(requestId, expires, sig)) {
        throw new AppError('INVALID_SIGNATURE', 'the download link is not valid; use the fileUrl exactly as the request status returned it')
      }
      const job = await store.files.selectJobFile(requestId)
      if (!job || job.status !== 'Completed' || fileGone(job, now()) || !await storage.exists(job.fileName as string)) {
        throw goneProblem(job, requestId, baseUrl)
      }
      const expiresMs = Number(expires) * 1000
      if (expiresMs < now()) {
        throw new AppError('FILE_EXPIRED',
          `the download link expired at ${new Date(expiresMs).toISOString()}; read the request's status again (GET /api/v1/request/${requestId}) for a fresh fileUrl`,
          { requestId })
      }
      return { fileName: job.fileName as string, bytes: job.bytes ?? 0 }
    },

    /** Deletes a completed job's file before it expires. */
    async removeJobFile (jobId: string, fileName: string): Promise<void> {
      await storage.remove(fileName)
      await store.files.markJobFileRemoved(jobId, now())
    },

    /**
     * At start-up: removes temporary files interrupted writes left and final files no
     * completed job owns, then sweeps expired ones.
     */
    async cleanUp (): Promise<void> {
      await storage.removeTemporary()
      const live = await store.files.selectLiveFileNames()
      for (const name of await storage.list()) {
        if (!live.has(name)) await storage.remove(name)
      }
      await sweep()
    },
  }
}

export type FilesService = ReturnType<typeof createFilesService>
