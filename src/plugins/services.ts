import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createLocalStorage, exportsDir } from '../files/local-storage.js'
import { createAdminService, type AdminService } from '../services/admin.js'
import { createExportEvents, type ExportEvents } from '../services/export-events.js'
import { createExportScheduler, type ExportScheduler, type RunTask } from '../services/export-scheduler.js'
import { createExportsService, type ExportsService } from '../services/exports.js'
import { createFilesService, type FilesService } from '../services/files.js'
import { createObjectsService, type ObjectsService } from '../services/objects.js'
import { createSigner, loadSigningSecret, type Signer } from '../services/signing.js'
import { createExportPool, createImportPool } from '../worker/pool.js'

/** Imports read or merged at once; more wait their turn. */
const IMPORT_WORKERS = 2

/** Every service, built once on the store; routes reach them as `app.services.<area>`. */
interface Services {
  readonly admin: AdminService
  readonly objects: ObjectsService
  readonly exports: ExportsService
  readonly scheduler: ExportScheduler
  /** Long-polls on jobs: who waits, and the notifications that answer them. */
  readonly events: ExportEvents
  readonly files: FilesService
  readonly signer: Signer
}

export interface ServicesOptions {
  /** Wraps how an export page is handed to the worker pool (a test's hold on a job's end). */
  exportTask?: (run: RunTask) => RunTask
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
  }
}

/**
 * Builds the services and the export and import worker pools, and finishes the imports a stop
 * interrupted. When the server is ready it recovers interrupted exports, cleans the
 * files directory and starts the queue and the retention sweeper; a stop starts no new job, lets running ones finish
 * for SHUTDOWN_GRACE_SECONDS and ends the workers.
 */
export default fp(async function servicesPlugin (app: FastifyInstance, options: ServicesOptions) {
  const { config, store, log } = app
  const signer = createSigner(loadSigningSecret(config.dataDir, config.signingSecret))
  const storage = createLocalStorage(exportsDir(config))
  const pool = createExportPool(config.exportWorkers)
  const importPool = createImportPool(IMPORT_WORKERS)
  const files = createFilesService({ store, storage, signer })
  const events = createExportEvents({ store })
  const scheduler = createExportScheduler({ store, events, storage, signer, runTask: options.exportTask?.(pool.run) ?? pool.run, config, log })
  const services: Services = {
    admin: createAdminService(store),
    objects: createObjectsService(store, config, importPool.tasks),
    exports: createExportsService({ store, scheduler, events, files, signer, config }),
    scheduler,
    events,
    files,
    signer,
  }
  app.decorate('services', services)
  // Imports a stop interrupted: valid ones are finished, partial ones dropped.
  const imports = await services.objects.recoverImports()
  if (imports.finished || imports.discarded) log.warn(imports, 'recovered imports interrupted by a stop')

  // Expired files go on a timer as well as at start-up, so disk use follows FILE_TTL_SECONDS.
  const sweepEveryMs = Math.min(60, config.fileTtlSeconds) * 1000
  let sweeper: NodeJS.Timeout | undefined
  /** The sweep in progress: one at a time, and a stop waits for it before the store closes. */
  let sweeping: Promise<unknown> | undefined
  app.addHook('onReady', async () => {
    const exports = await scheduler.recover()
    if (exports.failed || exports.requeued) log.warn(exports, 'recovered exports interrupted by a stop or crash')
    // Before any job runs: a file no completed job owns is a leftover of an interrupted one.
    await files.cleanUp()
    scheduler.start()
    sweeper = setInterval(() => {
      sweeping ??= files.sweep()
        .catch((err: unknown) => { log.error({ err }, 'could not sweep expired export files') })
        .finally(() => { sweeping = undefined })
    }, sweepEveryMs)
    sweeper.unref()
  })
  // A stop starts no new job, even while HTTP requests drain, and answers long-polls now.
  app.addHook('preClose', async () => {
    scheduler.pause()
    events.close()
  })
  // Runs before the store closes (close hooks run in reverse order of registration).
  app.addHook('onClose', async () => {
    clearInterval(sweeper)
    await sweeping
    await scheduler.stop(config.shutdownGraceSeconds * 1000)
    await pool.destroy()
    await importPool.destroy()
  })
}, { name: 'services', dependencies: ['store'] })
