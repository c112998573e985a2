/**
 * The application in the benchmark's own process, on a temporary DATA_DIR, so that the
 * process's RSS and event loop are the server's. Clients run in forked processes.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'

/** What a benchmark gets to work with. */
export interface BenchServer {
  app: FastifyInstance
  config: Config
  /** `http://127.0.0.1:<port>` */
  base: URL
  dataDir: string
  adminToken: string
  /** Has `child` stopped when the benchmark ends, however it ends. */
  adopt: (child: { kill: () => void }) => void
}

/**
 * Runs `bench` against the app listening on 127.0.0.1 (a free port) with LOG_LEVEL=warn, a
 * random admin token and `env` on top. Only these settings: nothing comes from the
 * caller's environment (PUBLIC_URL …), so a run measures the same thing anywhere.
 * Everything is removed at the end, Ctrl-C included.
 */
export async function runBenchServer (name: string, env: Record<string, string>, bench: (server: BenchServer) => Promise<void>): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), `${name}-`))
  const adminToken = `bench-admin-${randomBytes(16).toString('hex')}`
  const children: Array<{ kill: () => void }> = []
  let app: FastifyInstance | undefined
  const cleanup = (): void => {
    for (const c of children) c.kill()
    rmSync(dataDir, { recursive: true, force: true })
  }
  process.once('SIGINT', () => {
    cleanup()
    process.exit(130)
  })
  try {
    const config = loadConfig({ DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', ADMIN_TOKEN: adminToken, ...env })
    app = await buildApp(config)
    await app.listen({ host: config.host, port: config.port })
    const addr = app.server.address()
    if (addr === null || typeof addr === 'string') throw new Error('no TCP address')
    const base = new URL(`http://127.0.0.1:${addr.port}`)
    await bench({ app, config, base, dataDir, adminToken, adopt: (child) => { children.push(child) } })
  } finally {
    if (app) await app.close()
    cleanup()
  }
}
