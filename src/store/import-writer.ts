import { openSqliteImportWriter } from './sqlite/import-writer.js'
import type { ReaderSource } from './store.js'

/** A worker's writing connection for the one thing a worker writes: the merge of an import. */
export interface ImportWriter {
  /**
   * Applies a valid import in one transaction: every staged line, in body order (an id
   * repeated keeps its last line), upserted into the collection, and the import's row
   * removed. Readers see the collection before or after it, never between. Returns how
   * many lines it applied; throws (and applies nothing) on a database error.
   */
  merge: (stage: Iterable<[string, Buffer]>, importId: string, firmId: string, type: string, now: number) => number
  /** Closes the connection (its page cache goes with it). */
  close: () => void
}

/** Opens a worker's writing connection to the database a source names. */
export function openImportWriter (source: ReaderSource): ImportWriter {
  switch (source.dialect) {
    case 'sqlite': return openSqliteImportWriter(source.path)
  }
}
