import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'
import type { Config } from '../config.js'
import { AppError } from '../errors.js'
import type { Store } from '../store/store.js'
import type { MergeOutcome, MergeTask, StageMessage, StageOutcome, StageTask, TaskFault } from '../worker/import-task.js'
import { compactJson, isValidObjectId } from './ndjson.js'

/** The import worker's two tasks (src/worker/import-task.ts), as the pool runs them. */
export interface RunImportTasks {
  stage: (task: Omit<StageTask, 'kind'>) => Promise<StageOutcome>
  merge: (task: Omit<MergeTask, 'kind'>) => Promise<MergeOutcome>
}

/** Body chunks sent to the import worker and not yet taken: bounds the memory a fast client can fill. */
const CHUNKS_IN_FLIGHT = 16

const failed = (f: TaskFault): AppError => new AppError(f.code, f.detail, f.extra)

/** Imports (all or nothing, streamed, atomic for readers) and one-object reads and writes. */
export function createObjectsService (store: Store, config: Pick<Config, 'objectMaxBytes' | 'importMaxBytes' | 'dataDir'>, tasks: RunImportTasks, now = Date.now) {
  const objects = store.objects
  /** Stage files of imports under way: DATA_DIR/imports/<import id>.stage. */
  const stageDir = join(config.dataDir, 'imports')
  const stagePath = (importId: string): string => join(stageDir, `${importId}.stage`)
  mkdirSync(stageDir, { recursive: true })

  /** Applies a staged, valid import in one transaction on the worker's connection; then drops its stage file. */
  async function merge (importId: string, firmId: string, type: string): Promise<number> {
    const outcome = await store.writingElsewhere(() =>
      tasks.merge({ source: store.readerSource, stagePath: stagePath(importId), importId, firmId, type, now: now() }))
    if (!outcome.ok) throw failed(outcome)
    rmSync(stagePath(importId), { force: true })
    return outcome.merged
  }

  /** Forgets an import that will not be applied. */
  async function discard (importId: string): Promise<void> {
    rmSync(stagePath(importId), { force: true })
    await objects.deleteImport(importId)
  }

  /**
   * Streams the body to the import worker, which validates and stages it, honouring its
   * pace; stops sending as soon as the worker has found a fault.
   */
  async function stageBody (importId: string, body: AsyncIterable<Buffer>): Promise<number> {
    const { port1, port2 } = new MessageChannel()
    // Changed by the worker's acknowledgements and by the task's end, between awaits.
    const flow = { credit: CHUNKS_IN_FLIGHT, settled: false }
    let wake: (() => void) | undefined
    port1.on('message', () => {
      flow.credit++
      wake?.()
    })
    const task = tasks.stage({ stagePath: stagePath(importId), objectMaxBytes: config.objectMaxBytes, importMaxBytes: config.importMaxBytes, port: port2 })
      .finally(() => {
        flow.settled = true
        wake?.()
      })
    const send = (m: StageMessage): void => { if (!flow.settled) port1.postMessage(m) }
    try {
      for await (const chunk of body) {
        if (flow.settled) break
        send({ chunk })
        flow.credit--
        while (flow.credit <= 0 && !flow.settled) await new Promise<void>((resolve) => { wake = resolve })
      }
      send({ end: true })
    } catch (err) {
      // The body broke off (the client went away): the worker stops, nothing is applied.
      send({ abort: true })
      await task.catch(() => {})
      throw err
    } finally {
      port1.close()
    }
    const outcome = await task
    if (!outcome.ok) throw failed(outcome)
    return outcome.lines
  }

  return {
    /**
     * At start-up: finishes imports that had proved valid (merging) and drops those whose
     * body was still being read (staging) when the server stopped, and stray stage files.
     */
    async recoverImports (): Promise<{ finished: number, discarded: number }> {
      let finished = 0
      let discarded = 0
      const open = await objects.selectImports()
      for (const imp of open) {
        // A merge whose stage file is gone (an upgrade from before stage files) cannot be finished.
        if (imp.state === 'merging' && existsSync(stagePath(imp.id))) {
          await merge(imp.id, imp.firmId, imp.type)
          finished++
        } else {
          await discard(imp.id)
          discarded++
        }
      }
      const known = new Set(open.map((imp) => `${imp.id}.stage`))
      for (const name of readdirSync(stageDir)) if (!known.has(name)) rmSync(join(stageDir, name), { force: true })
      return { finished, discarded }
    },

    /**
     * Streams an NDJSON body into the collection, all or nothing: a worker validates
     * every line and stages it in a file as it arrives; only a wholly valid body is
     * merged, in one transaction, so readers see the collection before or after it,
     * never in between; a restart finishes a merge that had begun.
     */
    async importNdjson (firmId: string, type: string, body: AsyncIterable<Buffer>): Promise<{ imported: number }> {
      const importId = randomUUID()
      await objects.insertImport(importId, firmId, type, now())
      let lines: number
      try {
        lines = await stageBody(importId, body)
        if (lines === 0) throw new AppError('VALIDATION_FAILED', 'the body holds no object (it is empty, or only blank lines); send one JSON object per line')
        await objects.markImportMerging(importId)
      } catch (err) {
        await discard(importId)
        throw err
      }
      try {
        await merge(importId, firmId, type)
      } catch (err) {
        // Nothing was applied (the transaction rolled back): the import is not retried later.
        await discard(importId)
        throw err
      }
      return { imported: lines }
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
