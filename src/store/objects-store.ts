import type { imports } from './schema.js'

/** One validated line of an import: its 1-based line number, id and JSON bytes. */
export interface StagedRow { seq: number, id: string, doc: Buffer }

type Import = Pick<typeof imports.$inferSelect, 'id' | 'firmId' | 'type' | 'state'>

/** Objects of a collection, and imports staged before they are applied. */
export interface ObjectsStore {
  /** The stored JSON bytes of one object. */
  selectObjectDoc: (firmId: string, type: string, id: string) => Promise<Buffer | undefined>
  /** Replaces an existing object's document; false when there is no such object. */
  updateObjectDoc: (firmId: string, type: string, id: string, doc: Buffer, now: number) => Promise<boolean>
  insertObject: (firmId: string, type: string, id: string, doc: Buffer, now: number) => Promise<void>
  /** Deletes one object; false when it did not exist. */
  deleteObject: (firmId: string, type: string, id: string) => Promise<boolean>
  /** Inserts or replaces many objects at once (bulk loads such as the demo seed). */
  upsertObjects: (firmId: string, type: string, rows: Array<{ id: string, doc: Buffer }>, now: number) => Promise<void>
  /** How many objects a collection holds (a counter the database keeps: no scan). */
  countObjects: (firmId: string, type: string) => Promise<number>
  /** A firm's non-empty collections by name, with their object counts. */
  selectCollections: (firmId: string) => Promise<Array<{ type: string, objects: number }>>

  /** Records an import that has started reading its body (state `staging`). */
  insertImport: (id: string, firmId: string, type: string, now: number) => Promise<void>
  /** The whole body proved valid: from here on the import is finished, even across a restart. */
  markImportMerging: (id: string) => Promise<void>
  deleteImport: (id: string) => Promise<void>
  /** Imports a stop interrupted, oldest first. */
  selectImports: () => Promise<Import[]>
  /** Appends validated lines to an import's staging area, all of them or none. */
  insertStagedRows: (importId: string, rows: StagedRow[]) => Promise<void>
  /** The line number that ends the next batch of at most `limit` staged lines; undefined when none is left. */
  selectStagedBatchEnd: (importId: string, limit: number) => Promise<number | undefined>
  /**
   * Upserts the staged lines up to `lastSeq` into the collection, in line order, so an id
   * repeated within one import keeps its last line.
   */
  mergeStagedRows: (importId: string, firmId: string, type: string, lastSeq: number, now: number) => Promise<void>
  /** Deletes the staged lines up to `lastSeq`; returns how many. */
  deleteStagedRows: (importId: string, lastSeq: number) => Promise<number>
}
