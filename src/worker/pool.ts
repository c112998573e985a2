import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import type { RunTask } from '../services/export-scheduler.js'
import type { ExportOutcome, ExportTask } from './export-task.js'

/** The worker module beside this one: .ts under tsx/tap, .js from dist/. */
const WORKER_FILE = fileURLToPath(new URL(`./export-task${extname(fileURLToPath(import.meta.url))}`, import.meta.url))

/** The export worker threads (piscina): `run` hands a task to a free thread. */
export function createExportPool (threads: number): { run: RunTask, destroy: () => Promise<void> } {
  const pool = new Piscina<ExportTask, ExportOutcome>({
    filename: WORKER_FILE,
    minThreads: 1,
    maxThreads: threads,
    idleTimeout: 60_000,
  })
  return {
    run: (task, options) => pool.run(task, options),
    destroy: () => pool.destroy(),
  }
}
