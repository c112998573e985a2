import { randomUUID } from 'node:crypto'
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import type { Config } from '../config.js'
import { AppError } from '../errors.js'
import type { StagedRow } from '../store/objects-store.js'
import type { Store } from '../store/store.js'
import { compactJson, isValidObjectId, parseObjectLine, readLines } from './ndjson.js'

/** How many validated lines are staged per write transaction. */
const STAGE_BATCH_ROWS = 2000
const STAGE_BATCH_BYTES = 8 * 1024 * 1024
/** Lines moved into `objects` per transaction: small enough to keep the event loop free. */
const MERGE_BATCH_ROWS = 2000

/** Imports (all or nothing, streamed) and one-object reads and writes. */
export function createObjectsService (store: Store, config: Pick<Config, 'objectMaxBytes' | 'importMaxBytes'>, now = Date.now) {
  const objects = store.objects

  /**
   * Moves the next batch of an import's staged lines into the collection, or, when
   * `apply` is false, drops it; in one transaction. Returns how many lines it took.
   */
  function takeBatch (importId: string, firmId: string, type: string, limit: number, apply: boolean): Promise<number> {
    return store.transaction(async (tx) => {
      const end = await tx.objects.selectStagedBatchEnd(importId, limit)
      if (end === undefined) return 0
      if (apply) await tx.objects.mergeStagedRows(importId, firmId, type, end, now())
      return tx.objects.deleteStagedRows(importId, end)
    })
  }

  /** Moves all staged lines of a valid import into `objects`, a batch at a time. */
  async function merge (importId: string, firmId: string, type: string): Promise<void> {
    while (await takeBatch(importId, firmId, type, MERGE_BATCH_ROWS, true) > 0) await yieldToEventLoop()
    await objects.deleteImport(importId)
  }

  /** Drops the staged lines of an import that will not be applied. */
  async function discard (importId: string): Promise<void> {
    while (await takeBatch(importId, '', '', MERGE_BATCH_ROWS * 5, false) > 0) await yieldToEventLoop()
    await objects.deleteImport(importId)
  }

  return {
    /**
     * At start-up: finishes imports that had proved valid (merging) and drops those whose
     * body was still being read (staging) when the server stopped.
     */
    async recoverImports (): Promise<{ finished: number, discarded: number }> {
      let finished = 0
      let discarded = 0
      for (const imp of await objects.selectImports()) {
        if (imp.state === 'merging') {
          await merge(imp.id, imp.firmId, imp.type)
          finished++
        } else {
          await discard(imp.id)
          discarded++
        }
      }
      return { finished, discarded }
    },

    /**
     * Streams an NDJSON body into the collection, all or nothing: every line is validated
     * and staged first; only a wholly valid body is merged into `objects`, in batches that
     * let other requests through, and a restart finishes a merge that had begun.
     */
    async importNdjson (firmId: string, type: string, body: AsyncIterable<Buffer>): Promise<{ imported: number }> {
      const importId = randomUUID()
      await objects.insertImport(importId, firmId, type, now())
      let batch: StagedRow[] = []
      let batchBytes = 0
      let count = 0
      try {
        for await (const { line, lineNo } of readLines(body, { maxLineBytes: config.objectMaxBytes, maxTotalBytes: config.importMaxBytes })) {
          const id = parseObjectLine(line, lineNo, config.objectMaxBytes)
          batch.push({ seq: lineNo, id, doc: line })
          batchBytes += line.length
          count++
          if (batch.length >= STAGE_BATCH_ROWS || batchBytes >= STAGE_BATCH_BYTES) {
            await objects.insertStagedRows(importId, batch)
            batch = []
            batchBytes = 0
          }
        }
        if (batch.length) await objects.insertStagedRows(importId, batch)
      } catch (err) {
        await discard(importId)
        throw err
      }
      if (count === 0) {
        await discard(importId)
        throw new AppError('VALIDATION_FAILED', 'the body holds no object (it is empty, or only blank lines); send one JSON object per line')
      }
      await objects.markImportMerging(importId)
      await merge(importId, firmId, type)
      return { imported: count }
    },

    /** A firm's non-empty collections, by name, with their object counts. */
    async listCollections (firmId: string): Promise<Array<{ objectType: string, objects: number }>> {
      return (await objects.selectCollections(firmId)).map((c) => ({ objectType: c.type, objects: c.objects }))
    },

    /** The stored JSON bytes of one object; 404 when absent. */
    async getObject (firmId: string, type: string, id: string): Promise<Buffer> {
      const doc = await objects.selectObjectDoc(firmId, type, id)
      if (!doc) throw new AppError('NOT_FOUND', `no ${type} object with id '${id}' in firm '${firmId}'`)
      return doc
    },

    /**
     * Stores one object under its id; tells whether it was created. `text` is the body's
     * JSON text: stored compacted rather than re-serialized, so numbers keep their digits.
     */
    async putObject (firmId: string, type: string, id: string, body: Record<string, unknown>, text?: string): Promise<{ created: boolean, doc: Buffer }> {
      if (!isValidObjectId(id)) throw new AppError('VALIDATION_FAILED', 'the object id must be 1 to 256 well-formed characters without NUL')
      if (body.id !== id) {
        throw new AppError('VALIDATION_FAILED', `the body's "id" (${JSON.stringify(body.id)}) must equal the objectId of the path ('${id}')`)
      }
      const doc = Buffer.from(text === undefined ? JSON.stringify(body) : compactJson(text), 'utf8')
      if (doc.length > config.objectMaxBytes) {
        throw new AppError('OBJECT_TOO_LARGE', `the object is ${doc.length} bytes; the limit is ${config.objectMaxBytes} (OBJECT_MAX_BYTES)`)
      }
      const created = await store.transaction(async (tx) => {
        const at = now()
        if (await tx.objects.updateObjectDoc(firmId, type, id, doc, at)) return false
        await tx.objects.insertObject(firmId, type, id, doc, at)
        return true
      })
      return { created, doc }
    },

    /** Deletes one object; 404 when absent. */
    async deleteObject (firmId: string, type: string, id: string): Promise<void> {
      if (!await objects.deleteObject(firmId, type, id)) {
        throw new AppError('NOT_FOUND', `no ${type} object with id '${id}' in firm '${firmId}'`)
      }
    },
  }
}

export type ObjectsService = ReturnType<typeof createObjectsService>
