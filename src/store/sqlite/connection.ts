import Database from 'better-sqlite3'
import { Param, Placeholder } from 'drizzle-orm'
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3'
import { migrate } from 'drizzle-orm/better-sqlite3/migrator'
import { AsyncLocalStorage } from 'node:async_hooks'
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AppError } from '../../errors.js'
import * as schema from '../schema.js'

/** The SQLite migrations; src/store/sqlite and dist/store/sqlite sit three levels below the root. */
const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../db/migrations')
/** The database file in DATA_DIR. */
export const DB_FILE = 'bulk-export.sqlite'

export type Db = BetterSQLite3Database<typeof schema>

/**
 * Runs one synchronous database operation as a store call. Driver errors that mean
 * "nothing was written, try again" become a 503 the client can act on.
 */
export type Run = <T>(fn: () => T) => Promise<T>

/** The driver's own error (code and message), beneath any error Drizzle wrapped it in. */
export function driverError (err: unknown): { code?: string, message?: string } {
  let e = err as { code?: unknown, cause?: unknown } | undefined
  while (e && typeof e.code !== 'string' && e.cause) e = e.cause as typeof e
  return (e ?? {}) as { code?: string, message?: string }
}

/** A store call's driver error, as the client should see it (the driver's error kept as the cause, for the log). */
function translate (err: unknown): unknown {
  const { code } = driverError(err)
  if (typeof code !== 'string') return err
  // Locked past busy_timeout by another process (a backup, say): nothing was written.
  if (/^SQLITE_(BUSY|LOCKED)/.test(code)) return new AppError('SERVICE_UNAVAILABLE', 'the database is busy; nothing was changed, retry in a moment', {}, { cause: err })
  if (code.startsWith('SQLITE_FULL')) return new AppError('SERVICE_UNAVAILABLE', "the server's disk is full; nothing was changed", {}, { cause: err })
  return err
}

/** Marks the async context of an open transaction, to catch calls that would wait for it forever. */
const insideTransaction = new AsyncLocalStorage<Promise<void>>()

function guarded<T> (fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw translate(err)
  }
}

/**
 * The process's one SQLite connection (the only writer), in WAL mode, migrated. Calls
 * are synchronous underneath; a transaction spans awaits, so while one is open every
 * other call waits for it instead of running inside it.
 */
export class SqliteConnection {
  readonly sqlite: Database.Database
  readonly db: Db
  readonly path: string
  /** Settles when the open transaction ends. */
  private open: Promise<void> | undefined

  constructor (dataDir: string) {
    mkdirSync(dataDir, { recursive: true })
    this.path = join(dataDir, DB_FILE)
    this.sqlite = new Database(this.path)
    this.sqlite.pragma('journal_mode = WAL')
    this.sqlite.pragma('synchronous = NORMAL')
    this.sqlite.pragma('foreign_keys = ON')
    // A busy database (a backup, a reader checkpoint) is waited for, not failed at once.
    this.sqlite.pragma('busy_timeout = 5000')
    this.sqlite.pragma('cache_size = -65536')
    this.db = drizzle(this.sqlite, { schema })
    migrate(this.db, { migrationsFolder: MIGRATIONS_DIR })
  }

  /**
   * A call on the store (not on its `tx`) from inside an open transaction would wait for
   * that transaction forever: refuse it. Work the transaction started that outlives it
   * carries a stale mark, which no longer matches.
   */
  private refuseInsideTransaction (): void {
    if (this.open !== undefined && insideTransaction.getStore() === this.open) {
      throw new Error('a store call inside store.transaction() must go through the `tx` it was given (and transactions do not nest)')
    }
  }

  /** Runs an operation once no transaction is open. */
  readonly run: Run = async (fn) => {
    this.refuseInsideTransaction()
    while (this.open) await this.open
    return guarded(fn)
  }

  /** Runs an operation inside the open transaction (the transaction's own calls). */
  readonly runInTransaction: Run = async (fn) => guarded(fn)

  /**
   * Runs an operation without waiting for a lock another process holds: SQLITE_BUSY
   * at once instead of blocking the event loop for busy_timeout. For background writes
   * that their caller retries.
   */
  readonly runNoWait: Run = async (fn) => {
    this.refuseInsideTransaction()
    while (this.open) await this.open
    const timeout = this.sqlite.pragma('busy_timeout', { simple: true }) as number
    this.sqlite.pragma('busy_timeout = 0')
    try {
      return guarded(fn)
    } finally {
      this.sqlite.pragma(`busy_timeout = ${timeout}`)
    }
  }

  /**
   * BEGIN IMMEDIATE … COMMIT around `fn`, rolled back when it throws. IMMEDIATE takes the
   * write lock up front: a transaction that reads before it writes would otherwise get
   * SQLITE_BUSY at once, without busy_timeout, when another connection holds the lock.
   */
  async transaction<T> (fn: () => Promise<T>): Promise<T> {
    this.refuseInsideTransaction()
    while (this.open) await this.open
    let end!: () => void
    const open = new Promise<void>((resolve) => { end = resolve })
    this.open = open
    try {
      guarded(() => this.sqlite.exec('BEGIN IMMEDIATE'))
      try {
        const result = await insideTransaction.run(open, fn)
        guarded(() => this.sqlite.exec('COMMIT'))
        return result
      } catch (err) {
        if (this.sqlite.inTransaction) this.sqlite.exec('ROLLBACK')
        throw err
      }
    } finally {
      this.open = undefined
      end()
    }
  }

  close (): void {
    this.sqlite.close()
  }
}

/** A query built with Drizzle from the schema, not yet run. */
interface BuiltQuery { toSQL: () => { sql: string, params: unknown[] } }

/**
 * Compiles a Drizzle query once into a plain better-sqlite3 statement whose positional
 * parameters are the query's placeholders, in `order`. For the hot paths (staging an
 * import, reading an export page): the query's shape still comes from the schema, but
 * each run skips Drizzle's per-call mapping. Throws when `order` does not match.
 */
export function compile<P extends unknown[], R = unknown> (sqlite: Database.Database, query: BuiltQuery, order: string[]): Database.Statement<P, R> {
  const { sql, params } = query.toSQL()
  const names = params.map((p) => {
    const value = p instanceof Param ? p.value : p
    if (!(value instanceof Placeholder)) throw new Error(`compile: a literal parameter (${String(value)}) in: ${sql}`)
    return value.name
  })
  if (names.join() !== order.join()) throw new Error(`compile: placeholders ${names.join()} are not ${order.join()} in: ${sql}`)
  return sqlite.prepare<P, R>(sql)
}
