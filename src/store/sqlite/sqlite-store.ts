import { sql } from 'drizzle-orm'
import type { Repositories, Store } from '../store.js'
import { createAdminStore, prepareAdminQueries } from './admin-store.js'
import { SqliteConnection, type Run } from './connection.js'
import { createExportsStore, prepareExportsQueries } from './exports-store.js'
import { createFilesStore } from './files-store.js'
import { createObjectsStore, prepareObjectsQueries } from './objects-store.js'
import { createSchedulerStore, prepareSchedulerQueries } from './scheduler-store.js'

/** The store on SQLite, with the connection itself for what only SQLite has (tests, benchmarks). */
export interface SqliteStore extends Store {
  readonly connection: SqliteConnection
}

/**
 * Opens (creating if needed) the SQLite file in `dataDir` and applies the committed
 * migrations. Its connection is the process's only writer.
 */
export function openSqliteStore (dataDir: string): SqliteStore {
  const connection = new SqliteConnection(dataDir)
  const { db, sqlite } = connection
  const queries = {
    admin: prepareAdminQueries(db),
    objects: prepareObjectsQueries(db, sqlite),
    exports: prepareExportsQueries(db, sqlite),
    scheduler: prepareSchedulerQueries(db),
  }
  const repositories = (run: Run, runNoWait: Run): Repositories => ({
    admin: createAdminStore(db, queries.admin, run),
    objects: createObjectsStore(db, sqlite, queries.objects, run),
    exports: createExportsStore(db, queries.exports, run),
    scheduler: createSchedulerStore(db, queries.scheduler, runNoWait, run),
    files: createFilesStore(db, run),
  })
  const inTransaction = repositories(connection.runInTransaction, connection.runInTransaction)
  return {
    ...repositories(connection.run, connection.runNoWait),
    transaction: (fn) => connection.transaction(() => fn(inTransaction)),
    writingElsewhere: (fn) => connection.writingElsewhere(fn),
    ping: () => connection.run(() => { db.run(sql`SELECT 1`) }),
    readerSource: { dialect: 'sqlite', path: connection.path },
    close: async () => { connection.close() },
    connection,
  }
}
