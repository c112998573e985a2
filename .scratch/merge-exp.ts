import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { makeUser, prng } from '../scripts/lib/demo-data.js'
const N = Number(process.argv[2] ?? 200000)
const rand = prng(7)
const rows: Array<[string, Buffer]> = []
for (let i = 0; i < N; i++) { const o = makeUser(rand, i); rows.push([o.id as string, Buffer.from(JSON.stringify(o))]) }
function open (variant: string) {
  const dir = mkdtempSync(join(tmpdir(), 'mx-'))
  const db = new Database(join(dir, 'x.sqlite'))
  db.pragma('journal_mode = WAL'); db.pragma('synchronous = NORMAL'); db.pragma('cache_size = -65536')
  db.exec(`CREATE TABLE objects (seq INTEGER PRIMARY KEY, firm_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
  CREATE UNIQUE INDEX objects_key ON objects (firm_id, type, id);
  CREATE TABLE import_rows (import_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL, PRIMARY KEY (import_id, seq));`)
  if (variant === 'idx') db.exec('CREATE INDEX import_rows_id ON import_rows (import_id, id, seq)')
  return { db, dir }
}
function bare () {
  const { db, dir } = open('bare')
  const ins = db.prepare('INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?,?,?,?,?,?)')
  const t0 = performance.now()
  db.transaction(() => { for (const [id, doc] of rows) ins.run('f', 't', id, doc, 1, 1) })()
  const ms = performance.now() - t0
  db.close(); rmSync(dir, { recursive: true })
  return ms
}
function staged (variant: string) {
  const { db, dir } = open(variant)
  const stage = db.prepare('INSERT INTO import_rows (import_id, seq, id, doc) VALUES (?,?,?,?)')
  const t0 = performance.now()
  const batch = db.transaction((from: number) => { for (let i = from; i < Math.min(N, from + 2000); i++) stage.run('imp', i, rows[i][0], rows[i][1]) })
  for (let i = 0; i < N; i += 2000) batch(i)
  const t1 = performance.now()
  const order = variant === 'arrival' ? 'seq' : 'id, seq'
  db.exec('BEGIN IMMEDIATE')
  db.prepare(`INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) SELECT 'f', 't', id, doc, 1, 1 FROM import_rows WHERE import_id = 'imp' ORDER BY ${order} ON CONFLICT (firm_id, type, id) DO UPDATE SET doc = excluded.doc`).run()
  db.exec('COMMIT')
  const t2 = performance.now()
  db.close(); rmSync(dir, { recursive: true })
  return `${variant}: stage ${(t1 - t0).toFixed(0)} merge ${(t2 - t1).toFixed(0)} total ${(t2 - t0).toFixed(0)}`
}
for (let r = 0; r < 2; r++) {
  console.log('bare', bare().toFixed(0))
  for (const v of ['arrival', 'sorter', 'idx']) console.log(staged(v))
}
