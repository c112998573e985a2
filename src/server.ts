import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'

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
  // Running exports get SHUTDOWN_GRACE_SECONDS; requests and the store a little more.
  const timer = setTimeout(() => {
    app.log.warn('the stop did not finish in time; exiting')
    process.exit(1)
  }, (config.shutdownGraceSeconds + 10) * 1000)
  timer.unref()
  await app.close()
  app.log.info('stopped')
  process.exit(process.exitCode ?? 0)
}
// A fault outside any request: log it; an uncaught exception also stops the server
// (its state is unknown), with the same graceful path as a signal.
process.on('unhandledRejection', (err) => { app.log.error({ err }, 'unhandled rejection') })
process.on('uncaughtException', (err) => {
  app.log.fatal({ err }, 'uncaught exception; stopping')
  process.exitCode = 1
  void stop('uncaughtException')
})
process.once('SIGTERM', () => { void stop('SIGTERM') })
process.once('SIGINT', () => { void stop('SIGINT') })

try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  app.log.fatal({ err }, 'could not listen')
  process.exit(1)
}
