import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import type { RunTask } from '../services/export-scheduler.js'
import type { RunImportTasks } from '../services/objects.js'
import type { ExportOutcome, ExportTask } from './export-task.js'

/** A worker module beside this one: .ts under tsx/tap, .js from dist/. */
const workerFile = (name: string): string => fileURLToPath(new URL(`./${name}${extname(fileURLToPath(import.meta.url))}`, import.meta.url))

/**
 * V8's young generation per worker thread (MiB); the default is sized for a main thread.
 * Measured over an import and two 1M pulls: peak RSS ~260 MiB with these, ~320 with 48.
 * A `--max-semi-space-size` flag (as `npm start` passes) takes precedence over them.
 */
const EXPORT_YOUNG_GENERATION_MB = 4
const IMPORT_YOUNG_GENERATION_MB = 16

/** The export worker threads (piscina): `run` hands a task to a free thread. */
export function createExportPool (threads: number): { run: RunTask, destroy: () => Promise<void> } {
  const pool = new Piscina<ExportTask, ExportOutcome>({
    filename: workerFile('export-task'),
    minThreads: 1,
    maxThreads: threads,
    idleTimeout: 60_000,
    // Rows cross as Buffers SQLite joined: an export thread makes little garbage, and a
    // small young generation keeps its heap (and the server's RSS) small.
    resourceLimits: { maxYoungGenerationSizeMb: EXPORT_YOUNG_GENERATION_MB },
  })
  return {
    run: (task, options) => pool.run(task, options),
    destroy: () => pool.destroy(),
  }
}

/**
 * The import worker threads: one per import being read or merged, up to `threads` at
 * once (more wait their turn), none while no import runs.
 */
export function createImportPool (threads: number): { tasks: RunImportTasks, destroy: () => Promise<void> } {
  const pool = new Piscina({
    filename: workerFile('import-task'),
    minThreads: 0,
    maxThreads: threads,
    // An idle import thread goes soon: its heap is the server's RSS until it does.
    idleTimeout: 2_000,
    resourceLimits: { maxYoungGenerationSizeMb: IMPORT_YOUNG_GENERATION_MB },
  })
  return {
    tasks: {
      stage: (task) => pool.run({ kind: 'stage', ...task }, { transferList: [task.port] as never }),
      merge: (task) => pool.run({ kind: 'merge', ...task }),
    },
    destroy: () => pool.destroy(),
  }
}
