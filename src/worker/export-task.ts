import { closeSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs'
import { dirname } from 'node:path'
import type { MessagePort } from 'node:worker_threads'
import type { JobErrorCode } from '../contract/generated.js'
import { openExportReader, type ExportReader } from '../store/export-reader.js'
import type { ReaderSource } from '../store/store.js'
import { NdjsonWriter } from './ndjson-writer.js'
import { lowerThreadPriority } from './priority.js'
import { youngCollector } from './young-gc.js'

/** One export page to write: plain data only (crosses the thread boundary). */
export interface ExportTask {
  /** The database to read (Store.readerSource). */
  source: ReaderSource
  firmId: string
  objectType: string
  /** Export ids strictly after this one ('' = from the start). */
  after: string
  /** Most objects in the file (EXPORT_JOB_SIZE). */
  limit: number
  tmpPath: string
  finalPath: string
  /** Receives `{ expected }` once, then `{ processed }` every `progressEvery` rows. */
  port: MessagePort
  progressEvery: number
}

export type ExportOutcome =
  | { ok: true, total: number, bytes: number, sha256: string, lastId: string | null, hasMore: boolean }
  | { ok: false, code: Extract<JobErrorCode, 'EXPORT_WRITE_FAILED' | 'EXPORT_READ_FAILED'>, message: string }

// This thread yields the CPU to the event loop when the cores are busy.
lowerThreadPriority()

// Frees the batches this thread has written (see youngCollector).
const released = youngCollector()

// One read-only connection per worker thread and database, reused across tasks.
const readers = new Map<string, ExportReader>()
function readerFor (source: ReaderSource): ExportReader {
  const key = JSON.stringify(source)
  let reader = readers.get(key)
  if (!reader) {
    reader = openExportReader(source)
    readers.set(key, reader)
  }
  return reader
}

/**
 * Rows per database read: as many as fit BATCH_BYTES at the largest object seen so far in
 * the page, from 16 up to 2,000 (~1 MB at 500 B an object). A batch is one value inside
 * SQLite, which refuses values over 1 GB (SQLITE_TOOBIG): then the batch is read again in
 * halves, so a run of large objects after many small ones costs time, never the page.
 */
const BATCH_BYTES = 4 * 1024 * 1024
const FIRST_BATCH_ROWS = 16
const MAX_BATCH_ROWS = 2000

const isTooBig = (err: unknown): boolean => (err as { code?: unknown }).code === 'SQLITE_TOOBIG'

/**
 * Writes one page of a collection as NDJSON to a temporary file, fsyncs it and renames
 * it into place, so a file at finalPath is always whole. Counts limit + 1 rows to know
 * whether more follow. Never throws: errors come back as a plain outcome.
 */
export default function exportTask (task: ExportTask): ExportOutcome {
  // Both are set inside the snapshot's callback: declared wide so the checks below see it.
  let fd = undefined as number | undefined
  let stage = 'read' as 'read' | 'write'
  try {
    const reader = readerFor(task.source)
    // One read transaction for the whole page: its count and its rows come from one
    // committed state, so an import that commits meanwhile is in the page wholly or not at all.
    const { writer, lastId, hasMore, out } = reader.snapshot(() => {
      const found = reader.countPage(task.firmId, task.objectType, task.after, task.limit + 1)
      const expected = Math.min(found, task.limit)
      task.port.postMessage({ expected })
      stage = 'write'
      const out = fd = openSync(task.tmpPath, 'wx', 0o640)
      const writer = new NdjsonWriter(out)
      let lastId: string | null = null
      let rows = FIRST_BATCH_ROWS
      let largest = 1
      let written = 0
      while (writer.lines < expected) {
        // The batches written so far are unreachable here: free what they hold.
        released(written)
        written = 0
        stage = 'read'
        let batch
        try {
          batch = reader.readBatch(task.firmId, task.objectType, lastId ?? task.after, Math.min(rows, expected - writer.lines))
        } catch (err) {
          if (!isTooBig(err) || rows === 1) throw err
          rows = Math.ceil(rows / 2)
          continue
        }
        if (batch.count === 0) break
        largest = Math.max(largest, batch.maxDocBytes)
        rows = Math.max(1, Math.min(MAX_BATCH_ROWS, Math.floor(BATCH_BYTES / largest)))
        stage = 'write'
        const before = writer.lines
        writer.writeLines(batch.bytes, batch.count)
        lastId = batch.lastId
        written = batch.bytes.length
        if (Math.floor(writer.lines / task.progressEvery) > Math.floor(before / task.progressEvery)) task.port.postMessage({ processed: writer.lines })
      }
      released(written)
      stage = 'write'
      return { writer, lastId, hasMore: found > task.limit, out }
    })
    const sha256 = writer.finish()
    fsyncSync(out)
    closeSync(out)
    fd = undefined
    renameSync(task.tmpPath, task.finalPath)
    // Make the rename itself durable before the job is recorded Completed.
    const dir = openSync(dirname(task.finalPath), 'r')
    try { fsyncSync(dir) } finally { closeSync(dir) }
    task.port.postMessage({ processed: writer.lines })
    return { ok: true, total: writer.lines, bytes: writer.bytes, sha256, lastId, hasMore }
  } catch (err) {
    if (fd !== undefined) {
      try { closeSync(fd) } catch {}
    }
    try { rmSync(task.tmpPath, { force: true }) } catch {}
    const e = err as NodeJS.ErrnoException
    const message = stage === 'write'
      ? `could not write the export file (${e.code ?? e.message}); check free disk space and permissions of DATA_DIR`
      : `could not read the objects (${e.code ?? e.message})`
    return { ok: false, code: stage === 'write' ? 'EXPORT_WRITE_FAILED' : 'EXPORT_READ_FAILED', message }
  } finally {
    task.port.close()
  }
}
