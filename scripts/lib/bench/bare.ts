/**
 * The baselines of the benchmark: what a bare better-sqlite3 script does on the same
 * machine in the same run, with none of the product around it (no HTTP, no validation,
 * no job, no hash). Our figures are quoted as ratios to these.
 */
import Database from 'better-sqlite3'
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

/** Rows of an NDJSON file as a bare insert takes them: id and JSON bytes (not timed). */
export function loadRows (path: string): Array<{ id: string, doc: Buffer }> {
  const rows: Array<{ id: string, doc: Buffer }> = []
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line) rows.push({ id: (JSON.parse(line) as { id: string }).id, doc: Buffer.from(line) })
  }
  return rows
}

/**
 * A database file with a table of the same kind as the product's `objects` (rowid table,
 * unique (firm, type, id) index, blob doc), WAL, synchronous=NORMAL as the server runs it.
 */
export function openBareDb (path: string): Database.Database {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.exec(`CREATE TABLE IF NOT EXISTS objects (seq INTEGER PRIMARY KEY, firm_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    doc BLOB NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE UNIQUE INDEX IF NOT EXISTS objects_key ON objects (firm_id, type, id);`)
  return db
}

/** Inserts the rows in their order with one prepared statement in one transaction; ms. */
export function bareInsert (db: Database.Database, type: string, rows: Array<{ id: string, doc: Buffer }>): number {
  const insert = db.prepare('INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
  const t0 = performance.now()
  const now = Date.now()
  db.transaction(() => {
    for (const r of rows) insert.run('bare', type, r.id, r.doc, now, now)
  })()
  return performance.now() - t0
}

/**
 * Reads one page of a collection of the server's database in key order as bytes and
 * writes it as NDJSON through a 1 MiB buffer, then fsyncs it: the floor of an export page
 * in Node. Starts after the id `after`; returns ms, what it wrote and the last id.
 */
export function barePageWrite (dbPath: string, firmId: string, type: string, limit: number, outPath: string, after = ''): { ms: number, lines: number, bytes: number, lastId: string } {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true })
  try {
    const page = db.prepare<[string, string, string, number], [string, Buffer]>(
      'SELECT id, doc FROM objects WHERE firm_id = ? AND type = ? AND id > ? ORDER BY id LIMIT ?').raw(true)
    const t0 = performance.now()
    const fd = openSync(outPath, 'w')
    const buf = Buffer.allocUnsafe(1 << 20)
    let used = 0
    let lines = 0
    let bytes = 0
    let lastId = after
    const flush = (): void => {
      let off = 0
      while (off < used) off += writeSync(fd, buf, off, used - off)
      bytes += used
      used = 0
    }
    for (const [id, doc] of page.iterate(firmId, type, after, limit)) {
      if (used + doc.length + 1 > buf.length) flush()
      buf.set(doc, used)
      buf[used + doc.length] = 0x0a
      used += doc.length + 1
      lines++
      lastId = id
    }
    flush()
    fsyncSync(fd)
    closeSync(fd)
    const ms = performance.now() - t0
    rmSync(outPath, { force: true })
    return { ms, lines, bytes, lastId }
  } finally {
    db.close()
  }
}
