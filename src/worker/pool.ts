import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import type { RunTask } from '../services/export-scheduler.js'
import type { RunImportTasks } from '../services/objects.js'
import type { ExportOutcome, ExportTask } from './export-task.js'

/** A worker module beside this one: .ts under tsx/tap, .js from dist/. */
const workerFile = (name: string): string => fileURLToPath(new URL(`./${name}${extname(fileURLToPath(import.meta.url))}`, import.meta.url))

/** The export worker threads (piscina): `run` hands a task to a free thread. */
export function createExportPool (threads: number): { run: RunTask, destroy: () => Promise<void> } {
  const pool = new Piscina<ExportTask, ExportOutcome>({
    filename: workerFile('export-task'),
    minThreads: 1,
    maxThreads: threads,
    idleTimeout: 60_000,
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
  const pool = new Piscina({ filename: workerFile('import-task'), minThreads: 0, maxThreads: threads, idleTimeout: 10_000 })
  return {
    tasks: {
      stage: (task) => pool.run({ kind: 'stage', ...task }, { transferList: [task.port] as never }),
      merge: (task) => pool.run({ kind: 'merge', ...task }),
    },
    destroy: () => pool.destroy(),
  }
}
