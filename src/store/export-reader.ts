import Database from 'better-sqlite3'

/**
 * The worker's side of the store: its own read-only connection (never a writer) and the
 * keyset query of one export page. Reading `doc` as a BLOB hands back Buffers, so no
 * string is decoded or re-encoded on the way to the file.
 */
export function openExportReader (dbPath: string) {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true })
  db.pragma('busy_timeout = 5000')
  const page = db.prepare<[string, string, string, number], [string, Buffer]>(
    'SELECT id, doc FROM objects WHERE firm_id = ? AND type = ? AND id > ? ORDER BY id LIMIT ?').raw(true)
  const count = db.prepare<[string, string, string, number], number>(
    'SELECT count(*) FROM (SELECT 1 FROM objects WHERE firm_id = ? AND type = ? AND id > ? ORDER BY id LIMIT ?)').pluck(true)
  return {
    /** Rows (id, doc) after `after` in key order, at most `limit` of them. */
    iteratePage: (firmId: string, type: string, after: string, limit: number): IterableIterator<[string, Buffer]> =>
      page.iterate(firmId, type, after, limit),
    /** How many rows the same page holds (an index-only count). */
    countPage: (firmId: string, type: string, after: string, limit: number): number =>
      count.get(firmId, type, after, limit) ?? 0,
    close: (): void => { db.close() },
  }
}

export type ExportReader = ReturnType<typeof openExportReader>
