import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import { createExportsService, type ExportsService } from '../services/exports.js'
import { createSigner, loadSigningSecret, type Signer } from '../services/signing.js'
import { createExportsStore } from '../store/exports-store.js'
import type { ExportOutcome, ExportTask } from '../worker/export-task.js'

declare module 'fastify' {
  interface FastifyInstance {
    exportJobs: ExportsService
    signer: Signer
    /** Where finished export files live. */
    filesDir: string
  }
}

/** The worker module beside this one: .ts under tsx/tap, .js from dist/. */
const WORKER_FILE = fileURLToPath(new URL(`../worker/export-task${extname(fileURLToPath(import.meta.url))}`, import.meta.url))

/**
 * The export worker pool (worker_threads via piscina) and the job scheduler on top of
 * it. At start-up it removes temporary files a crash left behind and resumes queued and
 * interrupted jobs; on close it stops scheduling and ends the workers.
 */
export default fp(async function exportPoolPlugin (app: FastifyInstance) {
  const { config } = app
  const filesDir = join(config.dataDir, 'exports')
  mkdirSync(filesDir, { recursive: true })
  for (const name of readdirSync(filesDir)) {
    // Temporary files are never served; any left at start-up belong to an interrupted job.
    if (name.startsWith('.') && name.endsWith('.tmp')) rmSync(join(filesDir, name), { force: true })
  }
  const signer = createSigner(loadSigningSecret(config.dataDir, config.signingSecret))
  const pool = new Piscina<ExportTask, ExportOutcome>({
    filename: WORKER_FILE,
    minThreads: 1,
    maxThreads: config.exportWorkers,
    idleTimeout: 60_000,
  })
  const service = createExportsService({
    store: createExportsStore(app.store),
    signer,
    runTask: (task, options) => pool.run(task, options),
    config,
    dbPath: app.store.path,
    filesDir,
    log: app.log,
  })
  app.decorate('exportJobs', service)
  app.decorate('signer', signer)
  app.decorate('filesDir', filesDir)
  // Expired files go on a timer as well as at start-up, so disk use follows FILE_TTL_SECONDS.
  const sweepEveryMs = Math.min(60, config.fileTtlSeconds) * 1000
  let sweeper: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    service.resume()
    sweeper = setInterval(() => {
      try {
        service.sweep()
      } catch (err) {
        app.log.error({ err }, 'could not sweep expired export files')
      }
    }, sweepEveryMs)
    sweeper.unref()
  })
  // A stop starts no new job, even while HTTP requests drain.
  app.addHook('preClose', async () => { service.pause() })
  // Runs before the store closes (close hooks run in reverse order of registration).
  app.addHook('onClose', async () => {
    clearInterval(sweeper)
    await service.stop(config.shutdownGraceSeconds * 1000)
    await pool.destroy()
  })
}, { name: 'export-pool', dependencies: ['db'] })
