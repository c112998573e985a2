import { closeSync, fsyncSync, openSync } from 'node:fs'
import type { MessagePort } from 'node:worker_threads'
import { AppError, type ErrorCode, type ProblemExtra } from '../errors.js'
import { parseObjectLine, readLines } from '../services/ndjson.js'
import { openImportWriter, type ImportWriter } from '../store/import-writer.js'
import type { ReaderSource } from '../store/store.js'
import { driverError } from '../store/sqlite/connection.js'
import { lowerThreadPriority } from './priority.js'
import { readStage, StageWriter } from './stage-file.js'

// This thread yields the CPU to the event loop when the cores are busy.
lowerThreadPriority()

/**
 * The two tasks of an import, in a worker thread so that parsing a large body and merging
 * it never hold the server's event loop: `stage` validates the body as it streams in and
 * writes its lines to a stage file; `merge` applies a wholly valid stage file in one
 * transaction. Plain data in and out (they cross the thread boundary).
 */

/** What the main thread sends on a stage task's port: body chunks, then the end (or an abort). */
export type StageMessage = { chunk: Uint8Array } | { end: true } | { abort: true }

export interface StageTask {
  kind: 'stage'
  stagePath: string
  objectMaxBytes: number
  importMaxBytes: number
  /** Receives StageMessages; answers `{ ack: true }` for each chunk taken (flow control). */
  port: MessagePort
}

export interface MergeTask {
  kind: 'merge'
  source: ReaderSource
  stagePath: string
  importId: string
  firmId: string
  type: string
  now: number
}

/** A task's fault, as the client is to see it (an AppError's code, detail and extra fields). */
export interface TaskFault { ok: false, code: ErrorCode, detail: string, extra: ProblemExtra }

const fault = (err: unknown): TaskFault => {
  if (err instanceof AppError) return { ok: false, code: err.code, detail: err.detail ?? err.message, extra: { ...err.extra } }
  const { code } = driverError(err)
  if (code && /^SQLITE_(BUSY|LOCKED)/.test(code)) return { ok: false, code: 'SERVICE_UNAVAILABLE', detail: 'the database is busy; nothing was changed, retry in a moment', extra: {} }
  if (code?.startsWith('SQLITE_FULL') || (err as NodeJS.ErrnoException).code === 'ENOSPC') {
    return { ok: false, code: 'SERVICE_UNAVAILABLE', detail: "the server's disk is full; nothing was changed", extra: {} }
  }
  throw err
}

/** The body as it arrives on the port; each chunk taken is acknowledged. */
async function * bodyOf (port: MessagePort): AsyncGenerator<Buffer> {
  const queue: StageMessage[] = []
  let wake: (() => void) | undefined
  port.on('message', (m: StageMessage) => {
    queue.push(m)
    wake?.()
  })
  for (;;) {
    while (queue.length === 0) await new Promise<void>((resolve) => { wake = resolve })
    const m = queue.shift() as StageMessage
    if ('end' in m) return
    if ('abort' in m) throw new AppError('VALIDATION_FAILED', 'the body ended early; nothing was imported')
    port.postMessage({ ack: true })
    yield Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength)
  }
}

/** Validates every line of the body and stages it; the count of lines, or the first fault. */
async function stage (task: StageTask): Promise<{ ok: true, lines: number } | TaskFault> {
  const fd = openSync(task.stagePath, 'wx', 0o600)
  try {
    const writer = new StageWriter(fd)
    let lines = 0
    for await (const { line, lineNo } of readLines(bodyOf(task.port), { maxLineBytes: task.objectMaxBytes, maxTotalBytes: task.importMaxBytes })) {
      writer.add(parseObjectLine(line, lineNo, task.objectMaxBytes), line)
      lines++
    }
    writer.flush()
    // A merge after a restart reads this file: it must be whole on disk first.
    fsyncSync(fd)
    return { ok: true, lines }
  } catch (err) {
    return fault(err)
  } finally {
    closeSync(fd)
    task.port.close()
  }
}

/**
 * Applies a staged import in one transaction; how many lines it applied, or the fault.
 * The connection is opened for the merge and closed after it: its page cache (16 MiB
 * when full) is not kept by an idle worker.
 */
function merge (task: MergeTask): { ok: true, merged: number } | TaskFault {
  let writer: ImportWriter | undefined
  let fd: number | undefined
  try {
    writer = openImportWriter(task.source)
    fd = openSync(task.stagePath, 'r')
    return { ok: true, merged: writer.merge(readStage(fd), task.importId, task.firmId, task.type, task.now) }
  } catch (err) {
    return fault(err)
  } finally {
    // The merge's outcome stands whatever closing says: a throw here would report a
    // committed merge as failed (and the client would import again).
    try { if (fd !== undefined) closeSync(fd) } catch {}
    try { writer?.close() } catch {}
  }
}

type ImportTask = StageTask | MergeTask
export type StageOutcome = Awaited<ReturnType<typeof stage>>
export type MergeOutcome = ReturnType<typeof merge>

/** The worker's entry (one default export: piscina loads it the same way under tsx and from dist/). */
export default function importTask (task: ImportTask): Promise<StageOutcome> | MergeOutcome {
  return task.kind === 'stage' ? stage(task) : merge(task)
}
