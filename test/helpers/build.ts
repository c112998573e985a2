import type Database from 'better-sqlite3'
import type { FastifyInstance } from 'fastify'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../../src/app.js'
import type { RunTask } from '../../src/services/export-scheduler.js'
import { loadConfig, type Config } from '../../src/config.js'
import { exportsDir } from '../../src/files/local-storage.js'
import { checkTransactionNesting } from '../../src/store/sqlite/connection.js'
import type { SqliteStore } from '../../src/store/sqlite/sqlite-store.js'

// Every in-process test app refuses store calls that bypass a transaction's `tx` (off in production).
checkTransactionNesting()

export const ADMIN_TOKEN = 'test-admin-token-0123456789'

interface TapLike {
  teardown: (fn: () => unknown) => void
}

/**
 * Builds the real app on a fresh SQLite file in a tap fixture directory (migrations
 * applied) and closes it in teardown. `env` overrides the environment the config reads.
 */
export async function build (t: TapLike, env: Record<string, string> = {}, options: { exportTask?: ExportGate['wrap'] } = {}): Promise<FastifyInstance & { testConfig: Config }> {
  // A fresh directory per app (t.testdir() is one per test and is wiped when called again).
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-test-'))
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN, LOG_LEVEL: 'silent', ...env })
  const app = await buildApp(config, options)
  t.teardown(async () => {
    await app.close()
    rmSync(dataDir, { recursive: true, force: true })
  })
  return Object.assign(app, { testConfig: config })
}

/** A hold on the end of export pages: a page's worker finishes, but its job stays InProgress until `release`. */
export interface ExportGate {
  wrap: (run: RunTask) => RunTask
  /** Lets every held page (and any later one) end. */
  release: () => void
  /** How many pages have reached the hold. */
  held: () => number
}

/**
 * An ExportGate for `build(t, env, { exportTask: gate.wrap })`: a test sees a job running,
 * however fast the machine writes the page, and lets it end when it is done looking.
 */
export function exportGate (t: TapLike): ExportGate {
  let release: () => void = () => {}
  const open = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  let held = 0
  return {
    wrap: (run) => async (task, opts) => {
      const outcome = await run(task, opts)
      held++
      await open
      return outcome
    },
    release: () => release(),
    held: () => held,
  }
}

export const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

/** Creates the firms (idempotently) and a user in them; returns its id and token. */
export async function createUser (app: FastifyInstance, firms: string[], name = 'tester'): Promise<{ userId: string, token: string, tokenId: string, headers: Record<string, string> }> {
  for (const firmId of firms) {
    const res = await app.inject({ method: 'PUT', url: `/api/v1/admin/firms/${firmId}`, headers: admin })
    if (res.statusCode >= 300) throw new Error(`putFirm ${firmId}: ${res.statusCode} ${res.body}`)
  }
  const res = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { name, firms } })
  if (res.statusCode !== 201) throw new Error(`createUser: ${res.statusCode} ${res.body}`)
  const body = res.json()
  return { userId: body.userId, token: body.token, tokenId: body.tokenId, headers: { authorization: `Bearer ${body.token}` } }
}

/** Imports NDJSON lines into a collection through the API. */
export async function importLines (app: FastifyInstance, headers: Record<string, string>, firmId: string, type: string, lines: string[] | string) {
  return app.inject({
    method: 'POST',
    url: `/api/v1/idm/${firmId}/${type}/import`,
    headers: { ...headers, 'content-type': 'application/x-ndjson' },
    payload: typeof lines === 'string' ? lines : lines.map((l) => l + '\n').join(''),
  })
}

/** The app's own SQLite connection, for tests that look at (or break) the database itself. */
export function sqliteOf (app: FastifyInstance): Database.Database {
  return (app.store as SqliteStore).connection.sqlite
}

/** How many imports have a stage file (DATA_DIR/imports): lines read but not applied or dropped yet. */
export function stagedImports (app: FastifyInstance): number {
  return readdirSync(join(app.config.dataDir, 'imports')).length
}

/** The directory the app keeps its export files in. */
export function filesDirOf (app: FastifyInstance): string {
  return exportsDir(app.config)
}
