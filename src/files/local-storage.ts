import send, { type SendOptions } from '@fastify/send'
import type { FastifyReply } from 'fastify'
import { mkdirSync } from 'node:fs'
import { open, readdir, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import type { Config } from '../config.js'
import { FileBody } from './file-body.js'
import { FileGoneError, type FileStorage } from './storage.js'

/** The directory export files live in on the local disk. */
export function exportsDir (config: Pick<Config, 'dataDir'>): string {
  return join(config.dataDir, 'exports')
}

const SEND_OPTIONS: SendOptions = {
  contentType: false,
  cacheControl: false,
  index: false,
}

/** `Content-Range: bytes first-last/size` → first (a 206 always has one). */
const rangeStart = (contentRange: string): number => Number(/^bytes (\d+)-/.exec(contentRange)?.[1])

/**
 * Sends a file of `root` with what HTTP gives a file (@fastify/send: Range, ETag and
 * Last-Modified, conditional requests, HEAD); the body is a FileBody, which reuses its read
 * buffers. The file is opened first, so a file removed meanwhile (a cancel, the retention
 * sweep) is either sent whole from the open handle or is a FileGoneError, never half of
 * one. An error of @fastify/send (a 412, a 416 with its Content-Range) goes to the error
 * handler as the http-error it is.
 */
async function sendFile (reply: FastifyReply, root: string, fileName: string): Promise<FastifyReply> {
  const path = join(root, fileName)
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FileGoneError(fileName)
    throw err
  }
  let body: FileBody | undefined
  try {
    // send() is asked as for a HEAD: it answers status and headers and opens nothing (the
    // method is all it reads besides the headers); the body comes from the handle.
    const asHead = { headers: reply.request.raw.headers, method: 'HEAD' } as unknown as Readable
    const result = await send(asHead, encodeURIComponent(fileName), { ...SEND_OPTIONS, root })
    if (result.type === 'error') {
      if ((result.metadata.error as { status?: number }).status === 404) throw new FileGoneError(fileName)
      throw result.metadata.error
    }
    if (result.type !== 'file') throw new Error(`${fileName} is not a file`)
    const { statusCode, headers, stream } = result
    reply.code(statusCode).headers(headers)
    // A HEAD's or a 304's body: send()'s empty stream (a string would reset Content-Length).
    if (reply.request.method === 'HEAD' || statusCode === 304) return reply.send(stream)
    const start = statusCode === 206 ? rangeStart(headers['Content-Range'] as string) : 0
    body = new FileBody(handle, start, Number(headers['Content-Length']))
    // A body Fastify dropped without piping it (an onSend hook that failed) still closes
    // its file when the response does; destroying one that ended does nothing.
    const sent = body
    reply.raw.once('close', () => sent.destroy())
    return reply.send(body)
  } finally {
    if (body === undefined) await handle.close()
  }
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
