import type { SendOptions } from '@fastify/static'
import { mkdirSync } from 'node:fs'
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Config } from '../config.js'
import type { FileStorage } from './storage.js'

/** The directory export files live in on the local disk. */
export function exportsDir (config: Pick<Config, 'dataDir'>): string {
  return join(config.dataDir, 'exports')
}

// @fastify/send takes highWaterMark; @fastify/static's types do not list it.
const SEND_OPTIONS: SendOptions & { highWaterMark: number } = {
  contentType: false,
  cacheControl: false,
  // 1 MiB reads instead of 64 KiB: each read is a turn of the event loop, and under
  // polling load small reads cut download speed by an order of magnitude.
  highWaterMark: 1 << 20,
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
    // reply.sendFile comes from @fastify/static (plugins/static.ts); the root is named here.
    send: (reply, fileName) => reply.sendFile(fileName, root, SEND_OPTIONS),
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
