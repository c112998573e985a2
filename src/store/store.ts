import type { AdminStore } from './admin-store.js'
import type { ExportsStore } from './exports-store.js'
import type { FilesStore } from './files-store.js'
import type { ObjectsStore } from './objects-store.js'
import type { SchedulerStore } from './scheduler-store.js'

/**
 * Every query of the application, one store per area. Each call is one atomic operation
 * and returns a promise, whatever the database: services never learn which one it is.
 */
export interface Repositories {
  readonly admin: AdminStore
  readonly objects: ObjectsStore
  readonly exports: ExportsStore
  readonly scheduler: SchedulerStore
  readonly files: FilesStore
}

/**
 * Where an export worker reads from: plain data that crosses the thread boundary. Each
 * database the store runs on names itself here (src/store/export-reader.ts opens it).
 */
export type ReaderSource = { dialect: 'sqlite', path: string }

/** The database the server runs on, as services see it. */
export interface Store extends Repositories {
  /**
   * Runs `fn` in one transaction: all of its writes or none. `fn` uses the `tx` it is
   * given, never the store itself, and awaits nothing but calls on `tx`; other calls on
   * the store wait until it ends.
   */
  transaction: <T>(fn: (tx: Repositories) => Promise<T>) => Promise<T>
  /**
   * Runs `fn`, which writes through a worker's own connection (an import's merge: one
   * long transaction). The store's reads go on meanwhile; its writes wait for `fn` to end,
   * without blocking the event loop.
   */
  writingElsewhere: <T>(fn: () => Promise<T>) => Promise<T>
  /** Resolves when the database answers a trivial query (readiness). */
  ping: () => Promise<void>
  /** What a worker needs to open a connection of its own (read-only for exports, for merges for imports). */
  readonly readerSource: ReaderSource
  /** Closes the connection; the store is unusable afterwards. */
  close: () => Promise<void>
}
