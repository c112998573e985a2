import { openSqliteExportReader } from './sqlite/export-reader.js'
import type { ReaderSource } from './store.js'

/** Up to `limit` consecutive rows of a page, already as NDJSON bytes. */
interface PageBatch {
  /** How many rows (lines) `bytes` holds; 0 when none follow `after`. */
  count: number
  /** The id of the last row in `bytes` (null when count is 0). */
  lastId: string | null
  /** The size of the largest document in `bytes`. */
  maxDocBytes: number
  /** The rows' JSON, one per line, each line ending in a newline, in key order. */
  bytes: Buffer
}

/** A worker's read-only view of one collection's pages, in key order. */
export interface ExportReader {
  /** Runs `fn` in one read transaction: every read inside sees the same committed state. */
  snapshot: <T>(fn: () => T) => T
  /** The rows after `after`, at most `limit` of them, joined into NDJSON by the database. */
  readBatch: (firmId: string, type: string, after: string, limit: number) => PageBatch
  /** How many rows the same page holds (at most `limit`), from the index alone. */
  countPage: (firmId: string, type: string, after: string, limit: number) => number
}

/** Opens a worker's read-only connection to the database a source names. */
export function openExportReader (source: ReaderSource): ExportReader {
  switch (source.dialect) {
    case 'sqlite': return openSqliteExportReader(source.path)
  }
}
