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

/** One try of a call: its value, or SQLITE_BUSY while a writer elsewhere holds the lock. */
type Attempt<T> = { busy: false, value: T } | { busy: true }

/**
 * Marks the async context of an open transaction, to catch calls that would wait for it
 * forever. Off unless checkTransactionNesting() turned it on (the tests do): an
 * AsyncLocalStorage in use puts a promise hook on every await in the process, which
 * cost the status route about a fifth of its throughput.
 */
let insideTransaction: AsyncLocalStorage<Promise<void>> | undefined

/** Refuses, from now on, store calls made inside a transaction that bypass its `tx`. For tests and debugging. */
export function checkTransactionNesting (): void {
  insideTransaction ??= new AsyncLocalStorage<Promise<void>>()
}

function guarded<T> (fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw translate(err)
  }
}

/** How long a connection waits for another's write lock before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000

const isBusy = (err: unknown): boolean => /^SQLITE_BUSY/.test(driverError(err).code ?? '')

/**
 * The settings every connection to the database file shares (the server's, and an import
 * worker's): WAL, synchronous=NORMAL, a busy database waited for, a page cache of
 * `cacheKiB`, and a WAL file truncated back after a large transaction.
 */
export function configureConnection (sqlite: Database.Database, cacheKiB = 16 * 1024): void {
  sqlite.pragma('journal_mode = WAL')
  sqlite.pragma('synchronous = NORMAL')
  sqlite.pragma('foreign_keys = ON')
  // A busy database (a backup, a reader checkpoint, an import's merge) is waited for, not failed at once.
  sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
  sqlite.pragma(`cache_size = -${cacheKiB}`)
  sqlite.pragma(`journal_size_limit = ${64 * 1024 * 1024}`)
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
    configureConnection(this.sqlite)
    this.db = drizzle(this.sqlite, { schema })
    migrate(this.db, { migrationsFolder: MIGRATIONS_DIR })
  }

  /**
   * A call on the store (not on its `tx`) from inside an open transaction would wait for
   * that transaction forever: refuse it. Work the transaction started that outlives it
   * carries a stale mark, which no longer matches.
   */
  private refuseInsideTransaction (): void {
    if (this.open !== undefined && insideTransaction?.getStore() === this.open) {
      throw new Error('a store call inside store.transaction() must go through the `tx` it was given (and transactions do not nest)')
    }
  }

  /** Runs an operation once no transaction is open. */
  readonly run: Run = async (fn) => {
    this.refuseInsideTransaction()
    for (;;) {
      while (this.open) await this.open
      const retry = this.attempt(fn)
      if (!retry.busy) return retry.value
      await this.elsewhere
    }
  }

  /** Runs an operation inside the open transaction (the transaction's own calls). */
  readonly runInTransaction: Run = async (fn) => guarded(fn)

  /**
   * Runs an operation without waiting for a lock another process holds: SQLITE_BUSY
   * at once instead of blocking the event loop for busy_timeout. For background writes
   * that their caller retries.
   */
  readonly runNoWait: Run = async <T>(fn: () => T) => {
    this.refuseInsideTransaction()
    for (;;) {
      while (this.open) await this.open
      this.sqlite.pragma('busy_timeout = 0')
      let retry: Attempt<T>
      try {
        retry = this.attempt(fn)
      } finally {
        this.sqlite.pragma(`busy_timeout = ${this.writers > 0 ? 0 : BUSY_TIMEOUT_MS}`)
      }
      if (!retry.busy) return retry.value
      await this.elsewhere
    }
  }

  /**
   * One try of `fn`. While a writer elsewhere holds the lock (writingElsewhere), a write
   * fails at once with SQLITE_BUSY having written nothing: `busy` says to wait for that
   * writer and try again. Reads go on meanwhile (WAL), from the last committed state.
   */
  private attempt<T> (fn: () => T): Attempt<T> {
    try {
      return { busy: false, value: fn() }
    } catch (err) {
      if (this.writers > 0 && isBusy(err)) return { busy: true }
      throw translate(err)
    }
  }

  /** How many writers elsewhere in this process (an import's merge) are running, and when the last ends. */
  private writers = 0
  private elsewhere: Promise<void> = Promise.resolve()
  private endElsewhere: () => void = () => {}

  /**
   * Runs `fn`, which writes through another connection of this process (an import
   * worker's merge, one long transaction). Meanwhile this connection does not wait for
   * the lock (which would block the event loop): its reads go on, its writes wait for
   * `fn` to end and then run. Starts once this connection's open transaction has ended.
   */
  async writingElsewhere<T> (fn: () => Promise<T>): Promise<T> {
    this.refuseInsideTransaction()
    while (this.open) await this.open
    if (this.writers++ === 0) {
      this.elsewhere = new Promise((resolve) => { this.endElsewhere = resolve })
      this.sqlite.pragma('busy_timeout = 0')
    }
    try {
      return await fn()
    } finally {
      if (--this.writers === 0) {
        this.sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
        this.endElsewhere()
      }
    }
  }

  /**
   * BEGIN IMMEDIATE … COMMIT around `fn`, rolled back when it throws. IMMEDIATE takes the
   * write lock up front: a transaction that reads before it writes would otherwise get
   * SQLITE_BUSY at once, without busy_timeout, when another connection holds the lock.
   */
  async transaction<T> (fn: () => Promise<T>): Promise<T> {
    this.refuseInsideTransaction()
    for (;;) {
      while (this.open) await this.open
      if (!this.attempt(() => this.sqlite.exec('BEGIN IMMEDIATE')).busy) break
      await this.elsewhere
    }
    let end!: () => void
    const open = new Promise<void>((resolve) => { end = resolve })
    this.open = open
    try {
      try {
        const result = await (insideTransaction === undefined ? fn() : insideTransaction.run(open, fn))
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
