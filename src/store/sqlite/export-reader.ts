import Database from 'better-sqlite3'
import { and, count, eq, gt, sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/better-sqlite3'
import type { ExportReader } from '../export-reader.js'
import { objects } from '../schema.js'
import { compile } from './connection.js'

const p = sql.placeholder
type PageArgs = [firmId: string, type: string, after: string, limit: number]
const ORDER = ['firmId', 'type', 'after', 'limit']

/**
 * The worker's side of the store: its own read-only connection (never a writer) and the
 * keyset query of one export page. Rows come back as tuples with `doc` as a Buffer, so
 * no string is decoded or re-encoded on the way to the file.
 */
export function openSqliteExportReader (dbPath: string): ExportReader {
  const sqlite = new Database(dbPath, { readonly: true, fileMustExist: true })
  sqlite.pragma('busy_timeout = 5000')
  const db = drizzle(sqlite)
  const after = and(eq(objects.firmId, p('firmId')), eq(objects.type, p('type')), gt(objects.id, p('after')))
  const pageQuery = db.select({ id: objects.id, doc: objects.doc }).from(objects).where(after).orderBy(objects.id).limit(p('limit'))
  const page = compile<PageArgs, [string, Buffer]>(sqlite, pageQuery, ORDER).raw(true)
  // An index-only count of the same page.
  const counted = compile<PageArgs, number>(sqlite, db.select({ n: count() }).from(pageQuery.as('page')), ORDER).pluck(true)
  return {
    iteratePage: (...args) => page.iterate(...args),
    countPage: (...args) => counted.get(...args) ?? 0,
  }
}
