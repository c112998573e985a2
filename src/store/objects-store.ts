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
  const mergeStaged = sqlite.prepare<[string, string, number, number, string]>(`
    INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at)
    SELECT ?, ?, id, doc, ?, ? FROM import_rows WHERE import_id = ? ORDER BY seq
    ON CONFLICT (firm_id, type, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at`)
  const upsertOne = sqlite.prepare<[string, string, string, Buffer, number, number]>(`
    INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (firm_id, type, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at`)
  const countObjects = sqlite.prepare<[string, string], { n: number }>(
    'SELECT count(*) AS n FROM objects WHERE firm_id = ? AND type = ?')
  const deleteStaged = sqlite.prepare<[string]>('DELETE FROM import_rows WHERE import_id = ?')
  const deleteAllStaged = sqlite.prepare('DELETE FROM import_rows')

  return {
    /** The stored JSON bytes of one object. */
    selectObjectDoc: (firmId: string, type: string, id: string): Buffer | undefined =>
      selectDoc.get(firmId, type, id)?.doc,

    /** Inserts or replaces one object; true when it was created. */
    upsertObject: sqlite.transaction((firmId: string, type: string, id: string, doc: Buffer, now: number): boolean => {
      const row = selectSeq.get(firmId, type, id)
      if (row) {
        updateDoc.run(doc, now, row.seq)
        return false
      }
      insertObject.run(firmId, type, id, doc, now, now)
      return true
    }),

    /** Deletes one object; true when it existed. */
    deleteObject: (firmId: string, type: string, id: string): boolean =>
      deleteObject.run(firmId, type, id).changes > 0,

    /** Appends a batch of validated lines to an import's staging area, in one transaction. */
    insertStagedRows: sqlite.transaction((importId: string, rows: StagedRow[]): void => {
      for (const r of rows) insertStaged.run(importId, r.seq, r.id, r.doc)
    }),

    /** Moves an import's staged lines into `objects` (upserting by id) in one transaction. */
    mergeStagedRows: sqlite.transaction((importId: string, firmId: string, type: string, now: number): void => {
      mergeStaged.run(firmId, type, now, now, importId)
      deleteStaged.run(importId)
    }),

    deleteStagedRows: (importId: string): void => { deleteStaged.run(importId) },

    /** Upserts many objects in one transaction (bulk loads such as the demo seed). */
    upsertObjects: sqlite.transaction((firmId: string, type: string, rows: Array<{ id: string, doc: Buffer }>, now: number): void => {
      for (const r of rows) upsertOne.run(firmId, type, r.id, r.doc, now, now)
    }),

    countObjects: (firmId: string, type: string): number => countObjects.get(firmId, type)?.n ?? 0,

    /** Staging rows left by a crash; no import survives a restart. */
    deleteAllStagedRows: (): number => deleteAllStaged.run().changes,
  }
}

export type ObjectsStore = ReturnType<typeof createObjectsStore>
