import type { imports } from './schema.js'

type Import = Pick<typeof imports.$inferSelect, 'id' | 'firmId' | 'type' | 'state'>

/** Objects of a collection, and the imports under way (their lines are staged in files, src/worker/stage-file.ts). */
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
}
