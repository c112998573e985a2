import type { Store } from './db.js'

export interface StagedRow { seq: number, id: string, doc: Buffer }

/** Every query on `objects` and `import_rows`, as prepared statements on the writer connection. */
export function createObjectsStore ({ sqlite }: Store) {
  const selectDoc = sqlite.prepare<[string, string, string], { doc: Buffer }>(
    'SELECT doc FROM objects WHERE firm_id = ? AND type = ? AND id = ?')
  const selectSeq = sqlite.prepare<[string, string, string], { seq: number }>(
    'SELECT seq FROM objects WHERE firm_id = ? AND type = ? AND id = ?')
  const updateDoc = sqlite.prepare<[Buffer, number, number]>(
    'UPDATE objects SET doc = ?, updated_at = ? WHERE seq = ?')
  const insertObject = sqlite.prepare<[string, string, string, Buffer, number, number]>(
    'INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
  const deleteObject = sqlite.prepare<[string, string, string]>(
    'DELETE FROM objects WHERE firm_id = ? AND type = ? AND id = ?')
  const insertStaged = sqlite.prepare<[string, number, string, Buffer]>(
    'INSERT INTO import_rows (import_id, seq, id, doc) VALUES (?, ?, ?, ?)')
  // Rows are merged in line order, so an id repeated within one import keeps its last line.
  const mergeStaged = sqlite.prepare<[string, string, number, number, string, number]>(`
    INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at)
    SELECT ?, ?, id, doc, ?, ? FROM import_rows WHERE import_id = ? AND seq <= ? ORDER BY seq
    ON CONFLICT (firm_id, type, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at`)
  const upsertOne = sqlite.prepare<[string, string, string, Buffer, number, number]>(`
    INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (firm_id, type, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at`)
  const countObjects = sqlite.prepare<[string, string], { n: number }>(
    'SELECT count(*) AS n FROM objects WHERE firm_id = ? AND type = ?')
  const batchEnd = sqlite.prepare<[string, number], number | null>(
    'SELECT max(seq) FROM (SELECT seq FROM import_rows WHERE import_id = ? ORDER BY seq LIMIT ?)').pluck(true)
  const deleteStagedUpTo = sqlite.prepare<[string, number]>('DELETE FROM import_rows WHERE import_id = ? AND seq <= ?')
  const insertImport = sqlite.prepare<[string, string, string, number]>(
    "INSERT INTO imports (id, firm_id, type, state, created_at) VALUES (?, ?, ?, 'staging', ?)")
  const importMerging = sqlite.prepare<[string]>("UPDATE imports SET state = 'merging' WHERE id = ?")
  const deleteImport = sqlite.prepare<[string]>('DELETE FROM imports WHERE id = ?')
  const selectImports = sqlite.prepare<[], { id: string, firmId: string, type: string, state: 'staging' | 'merging' }>(
    'SELECT id, firm_id AS firmId, type, state FROM imports ORDER BY created_at')

  return {
    /** The stored JSON bytes of one object. */
    selectObjectDoc: (firmId: string, type: string, id: string): Buffer | undefined =>
      selectDoc.get(firmId, type, id)?.doc,

    /**
     * Inserts or replaces one object; true when it was created. BEGIN IMMEDIATE: a
     * transaction that reads before it writes gets SQLITE_BUSY at once, without waiting
     * (busy_timeout), when another connection holds the write lock.
     */
    upsertObject: sqlite.transaction((firmId: string, type: string, id: string, doc: Buffer, now: number): boolean => {
      const row = selectSeq.get(firmId, type, id)
      if (row) {
        updateDoc.run(doc, now, row.seq)
        return false
      }
      insertObject.run(firmId, type, id, doc, now, now)
      return true
    }).immediate,

    /** Deletes one object; true when it existed. */
    deleteObject: (firmId: string, type: string, id: string): boolean =>
      deleteObject.run(firmId, type, id).changes > 0,

    /** Appends a batch of validated lines to an import's staging area, in one transaction. */
    insertStagedRows: sqlite.transaction((importId: string, rows: StagedRow[]): void => {
      for (const r of rows) insertStaged.run(importId, r.seq, r.id, r.doc)
    }),

    /** Records an import that has started reading its body. */
    insertImport: (id: string, firmId: string, type: string, now: number): void => { insertImport.run(id, firmId, type, now) },

    /** The whole body is valid: from here on the import is finished, even across a restart. */
    markImportMerging: (id: string): void => { importMerging.run(id) },

    deleteImport: (id: string): void => { deleteImport.run(id) },

    /** Imports a stop interrupted. */
    selectImports: () => selectImports.all(),

    /**
     * Moves the next `limit` staged lines of an import into `objects` (upserting by id)
     * in one transaction; returns how many moved (0: none left).
     */
    mergeStagedBatch: sqlite.transaction((importId: string, firmId: string, type: string, now: number, limit: number): number => {
      const end = batchEnd.get(importId, limit)
      if (end === null || end === undefined) return 0
      mergeStaged.run(firmId, type, now, now, importId, end)
      return deleteStagedUpTo.run(importId, end).changes
    }).immediate,

    /** Deletes up to `limit` staged lines of an import; returns how many. */
    deleteStagedBatch: sqlite.transaction((importId: string, limit: number): number => {
      const end = batchEnd.get(importId, limit)
      if (end === null || end === undefined) return 0
      return deleteStagedUpTo.run(importId, end).changes
    }).immediate,

    /** Upserts many objects in one transaction (bulk loads such as the demo seed). */
    upsertObjects: sqlite.transaction((firmId: string, type: string, rows: Array<{ id: string, doc: Buffer }>, now: number): void => {
      for (const r of rows) upsertOne.run(firmId, type, r.id, r.doc, now, now)
    }),

    countObjects: (firmId: string, type: string): number => countObjects.get(firmId, type)?.n ?? 0,
  }
}

export type ObjectsStore = ReturnType<typeof createObjectsStore>
