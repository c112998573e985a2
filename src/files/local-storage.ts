import send, { type SendOptions } from '@fastify/send'
import type { FastifyReply } from 'fastify'
import { mkdirSync } from 'node:fs'
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Config } from '../config.js'
import { CHUNK_BYTES, FileBody } from './file-body.js'
import type { FileStorage } from './storage.js'

/** The directory export files live in on the local disk. */
export function exportsDir (config: Pick<Config, 'dataDir'>): string {
  return join(config.dataDir, 'exports')
}

const SEND_OPTIONS: SendOptions = {
  contentType: false,
  cacheControl: false,
  index: false,
  // Only a HEAD request's (empty) stream is sent as it is; others are replaced by a FileBody.
  highWaterMark: CHUNK_BYTES,
}

/** `Content-Range: bytes first-last/size` → first (a 206 always has one). */
const rangeStart = (contentRange: string): number => Number(/^bytes (\d+)-/.exec(contentRange)?.[1])

/**
 * Sends a file of `root` with what HTTP gives a file (@fastify/send: Range, ETag and
 * Last-Modified, conditional requests, HEAD); the body is a FileBody, which reuses its read
 * buffers. An error of @fastify/send (a 412, a 416 with its Content-Range, a file gone) goes
 * to the error handler as the http-error it is.
 */
async function sendFile (reply: FastifyReply, root: string, fileName: string): Promise<FastifyReply> {
  const result = await send(reply.request.raw, encodeURIComponent(fileName), { ...SEND_OPTIONS, root })
  if (result.type !== 'file') {
    result.stream.destroy()
    if (result.type === 'error') throw result.metadata.error
    throw new Error(`${fileName} is not a file`)
  }
  const { statusCode, headers, stream, metadata } = result
  reply.code(statusCode).headers(headers)
  if (reply.request.method === 'HEAD' || statusCode === 304) return reply.send(stream)
  // send() opened a stream of the range; the body reads the same range itself.
  stream.destroy()
  const start = statusCode === 206 ? rangeStart(headers['Content-Range'] as string) : 0
  return reply.send(new FileBody(metadata.path, start, Number(headers['Content-Length'])))
}

const isTemporary = (name: string): boolean => name.startsWith('.') && name.endsWith('.tmp')

/**
 * Export files in a directory of the local disk (DATA_DIR/exports). Names come from
 * server-generated job ids only; a temporary file is hidden (`.<job>.<attempt>.tmp`), so
 * nothing half-written ever has a final name.
 */
export function createLocalStorage (root: string): FileStorage {
  mkdirSync(root, { recursive: true })
  const fileNameOf = (jobId: string): string => `${jobId}.ndjson`
  const tmpNameOf = (jobId: string, attempt: number): string => `.${jobId}.${attempt}.tmp`
  const remove = async (name: string): Promise<void> => {
    try { await rm(join(root, name), { force: true }) } catch {}
  }
  return {
    send: (reply, fileName) => sendFile(reply, root, fileName),
    fileNameOf,
    paths: (jobId, attempt) => ({ tmpPath: join(root, tmpNameOf(jobId, attempt)), finalPath: join(root, fileNameOf(jobId)) }),
    exists: async (fileName) => {
      try {
        return (await stat(join(root, fileName))).isFile()
      } catch {
        return false
      }
    },
    remove,
    discardAttempt: async (jobId, attempt) => {
      await Promise.all([remove(tmpNameOf(jobId, attempt)), remove(fileNameOf(jobId))])
    },
    list: async () => (await readdir(root)).filter((name) => name.endsWith('.ndjson') && !isTemporary(name)),
    removeTemporary: async () => {
      const names = (await readdir(root)).filter(isTemporary)
      await Promise.all(names.map((name) => rm(join(root, name), { force: true })))
      return names.length
    },
  }
}
