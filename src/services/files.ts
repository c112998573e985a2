import type { FastifyReply } from 'fastify'
import { AppError } from '../errors.js'
import type { FileStorage } from '../files/storage.js'
import type { Store } from '../store/store.js'
import type { Signer } from './signing.js'

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

    /** Sends a file `resolveDownload` named as the reply's body. */
    send: (reply: FastifyReply, fileName: string) => storage.send(reply, fileName),

    /** Checks a download link and returns the file's name in the storage. */
    async resolveDownload (requestId: string, expires: string, sig: string): Promise<string> {
      if (!signer.verifyDownload(requestId, expires, sig)) {
        throw new AppError('INVALID_SIGNATURE', 'the download link is not valid; use the fileUrl exactly as the request status returned it')
      }
      const gone = new AppError('FILE_EXPIRED', 'the download link has expired or the file was removed; read the request status again for a fresh fileUrl (or export the page again)')
      if (Number(expires) * 1000 < now()) throw gone
      const job = await store.files.selectJobFile(requestId)
      if (!job || job.status !== 'Completed' || !job.fileName || (job.expiresAt ?? 0) < now()) throw gone
      if (!await storage.exists(job.fileName)) throw gone
      return job.fileName
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
