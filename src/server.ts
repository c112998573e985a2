import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'

/** How long a stop waits for in-flight requests before closing anyway. */
const CLOSE_GRACE_MS = 10_000

let config: Config
try {
  config = loadConfig()
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`)
    process.exit(78)
  }
  throw err
}

const app = await buildApp(config)

let stopping = false
async function stop (signal: string): Promise<void> {
  if (stopping) return
  stopping = true
  app.log.info({ signal }, 'stopping: finishing in-flight requests')
  const timer = setTimeout(() => {
    app.log.warn('in-flight requests did not finish in time; exiting')
    process.exit(1)
  }, CLOSE_GRACE_MS)
  timer.unref()
  await app.close()
  app.log.info('stopped')
  process.exit(0)
}
process.once('SIGTERM', () => { void stop('SIGTERM') })
process.once('SIGINT', () => { void stop('SIGINT') })

try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  app.log.fatal({ err }, 'could not listen')
  process.exit(1)
}
