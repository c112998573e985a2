import type Database from 'better-sqlite3'
import { and, asc, eq, gt, sql } from 'drizzle-orm'
import type { ObjectsStore } from '../objects-store.js'
import { collections, imports, objects } from '../schema.js'
import { compile, type Db, type Run } from './connection.js'

const p = sql.placeholder

/** Statements prepared once per connection. */
export function prepareObjectsQueries (db: Db, sqlite: Database.Database) {
  const key = and(eq(objects.firmId, p('firmId')), eq(objects.type, p('type')), eq(objects.id, p('id')))
  const upsert = { target: [objects.firmId, objects.type, objects.id], set: { doc: sql`excluded.doc`, updatedAt: sql`excluded.updated_at` } }
  return {
    doc: db.select({ doc: objects.doc }).from(objects).where(key).prepare(),
    updateDoc: db.update(objects).set({ doc: sql`${p('doc')}`, updatedAt: sql`${p('now')}` }).where(key).prepare(),
    upsertOne: compile<[string, string, string, Buffer, number, number]>(sqlite,
      db.insert(objects).values({ firmId: p('firmId'), type: p('type'), id: p('id'), doc: p('doc'), createdAt: p('now'), updatedAt: p('now2') })
        .onConflictDoUpdate(upsert),
      ['firmId', 'type', 'id', 'doc', 'now', 'now2']),
  }
}

/** The objects store on SQLite; `run` decides when each call may touch the connection. */
export function createObjectsStore (db: Db, sqlite: Database.Database, q: ReturnType<typeof prepareObjectsQueries>, run: Run): ObjectsStore {
  const upsertAll = sqlite.transaction((firmId: string, type: string, rows: Array<{ id: string, doc: Buffer }>, now: number) => {
    for (const r of rows) q.upsertOne.run(firmId, type, r.id, r.doc, now, now)
  })
  return {
    selectObjectDoc: (firmId, type, id) => run(() => q.doc.get({ firmId, type, id })?.doc),
    updateObjectDoc: (firmId, type, id, doc, now) => run(() => q.updateDoc.run({ firmId, type, id, doc, now }).changes > 0),
    insertObject: (firmId, type, id, doc, now) => run(() => {
      db.insert(objects).values({ firmId, type, id, doc, createdAt: now, updatedAt: now }).run()
    }),
    deleteObject: (firmId, type, id) => run(() =>
      db.delete(objects).where(and(eq(objects.firmId, firmId), eq(objects.type, type), eq(objects.id, id))).run().changes > 0),
    upsertObjects: (firmId, type, rows, now) => run(() => upsertAll(firmId, type, rows, now)),
    countObjects: (firmId, type) => run(() => db.select({ n: collections.objects }).from(collections)
      .where(and(eq(collections.firmId, firmId), eq(collections.type, type))).get()?.n ?? 0),
    selectCollections: (firmId) => run(() => db.select({ type: collections.type, objects: collections.objects }).from(collections)
      .where(and(eq(collections.firmId, firmId), gt(collections.objects, 0))).orderBy(asc(collections.type)).all()),

    insertImport: (id, firmId, type, now) => run(() => {
      db.insert(imports).values({ id, firmId, type, state: 'staging', createdAt: now }).run()
    }),
    markImportMerging: (id) => run(() => { db.update(imports).set({ state: 'merging' }).where(eq(imports.id, id)).run() }),
    deleteImport: (id) => run(() => { db.delete(imports).where(eq(imports.id, id)).run() }),
    selectImports: () => run(() => db.select({ id: imports.id, firmId: imports.firmId, type: imports.type, state: imports.state })
      .from(imports).orderBy(asc(imports.createdAt)).all()),
  }
}
