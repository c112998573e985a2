import type { FastifyReply } from 'fastify'

/** A file that is not there to be sent (removed since its download was checked). */
export class FileGoneError extends Error {
  constructor (fileName: string) {
    super(`${fileName} is gone`)
    this.name = 'FileGoneError'
  }
}

/**
 * Where export files live. A worker writes a job's file at `paths(…).tmpPath` and renames
 * it to `finalPath` once whole; everything else names files by their final name only.
 */
export interface FileStorage {
  /**
   * Sends a final file as the reply's body, with what HTTP gives a file: Range, ETag and
   * Last-Modified, conditional requests; the caller has set Content-Type and friends.
   * Rejects with a FileGoneError, before anything is sent, if the file is not there.
   */
  send: (reply: FastifyReply, fileName: string) => FastifyReply | Promise<FastifyReply>
  /** Where a worker writes one attempt of a job, and where the whole file then goes. */
  paths: (jobId: string, attempt: number) => { tmpPath: string, finalPath: string }
  /** The final name of a job's file. */
  fileNameOf: (jobId: string) => string
  /** Whether a final file is there. */
  exists: (fileName: string) => Promise<boolean>
  /** Removes a final file if it is there. */
  remove: (fileName: string) => Promise<void>
  /**
   * Removes what one attempt of a job left: its temporary file and, had it got that far,
   * its final file (which no completed job owns then).
   */
  discardAttempt: (jobId: string, attempt: number) => Promise<void>
  /** The final files there are. */
  list: () => Promise<string[]>
  /** Removes the temporary files interrupted writes left; returns how many. */
  removeTemporary: () => Promise<number>
}
