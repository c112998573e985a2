import Database from 'better-sqlite3'
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3'
import { migrate } from 'drizzle-orm/better-sqlite3/migrator'
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as schema from './schema.js'

/** The migrations folder; src/store and dist/store both sit two levels below the root. */
export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../db/migrations')
export const DB_FILE = 'bulk-export.sqlite'

export type Db = BetterSQLite3Database<typeof schema>

export interface Store {
  readonly sqlite: Database.Database
  readonly db: Db
  readonly path: string
}

/**
 * Opens (creating if needed) the SQLite file in dataDir in WAL mode and applies the
 * committed migrations. The returned connection is the process's only writer.
 */
export function openStore (dataDir: string): Store {
  mkdirSync(dataDir, { recursive: true })
  const path = join(dataDir, DB_FILE)
  const sqlite = new Database(path)
  sqlite.pragma('journal_mode = WAL')
  sqlite.pragma('synchronous = NORMAL')
  sqlite.pragma('foreign_keys = ON')
  // A busy database (a backup, a reader checkpoint) is waited for, not failed at once.
  sqlite.pragma('busy_timeout = 5000')
  sqlite.pragma('cache_size = -65536')
  const db = drizzle(sqlite, { schema })
  migrate(db, { migrationsFolder: MIGRATIONS_DIR })
  return { sqlite, db, path }
}
