import { openSqliteExportReader } from './sqlite/export-reader.js'
import type { ReaderSource } from './store.js'

/** A worker's read-only view of one collection's pages, in key order. */
export interface ExportReader {
  /** Rows (id, JSON bytes) after `after`, at most `limit` of them. */
  iteratePage: (firmId: string, type: string, after: string, limit: number) => IterableIterator<[string, Buffer]>
  /** How many rows the same page holds. */
  countPage: (firmId: string, type: string, after: string, limit: number) => number
}

/** Opens a worker's read-only connection to the database a source names. */
export function openExportReader (source: ReaderSource): ExportReader {
  switch (source.dialect) {
    case 'sqlite': return openSqliteExportReader(source.path)
  }
}
