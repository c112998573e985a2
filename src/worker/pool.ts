import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import type { RunTask } from '../services/export-scheduler.js'
import type { RunImportTasks } from '../services/objects.js'
import type { ExportOutcome, ExportTask } from './export-task.js'

const EXTENSION = extname(fileURLToPath(import.meta.url))

/** A worker module beside this one: .ts under tsx/tap, .js from dist/. */
const workerFile = (name: string): string => fileURLToPath(new URL(`./${name}${EXTENSION}`, import.meta.url))

const LOADER_FLAGS = ['--import', '--loader', '--experimental-loader', '--require', '-r']

/**
 * The flags a worker thread starts with. From dist/ (production): the parent's, V8 flags
 * such as --max-semi-space-size included. A .ts worker (under tsx or tap) needs a
 * TypeScript loader and nothing else that was loaded into the parent: the loaders of a
 * test runner (module mocks, process tracking) took a thread ~1.3 s to start instead of
 * ~0.5 s, paid by every app a test builds.
 */
function workerExecArgv (): string[] | undefined {
  if (EXTENSION !== '.ts') return undefined
  const flags = [`--import=${import.meta.resolve('tsx')}`]
  for (let i = 0; i < process.execArgv.length; i++) {
    const flag = process.execArgv[i]
    if (LOADER_FLAGS.includes(flag)) i++ // and its value
    else if (!LOADER_FLAGS.some((name) => flag.startsWith(`${name}=`))) flags.push(flag)
  }
  return flags
}

/** Read once: the process's flags do not change. */
const WORKER_EXEC_ARGV = workerExecArgv()

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
    execArgv: WORKER_EXEC_ARGV,
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
    execArgv: WORKER_EXEC_ARGV,
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
