import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { loadRows } from '../scripts/lib/bench/bare.js'
import { writeDataset } from '../scripts/lib/bench/data.js'
const ds = await writeDataset('/tmp/ins-exp.ndjson', 100000, 600, 1)
const rows = loadRows(ds.path)
const sorted = [...rows].sort((a, b) => a.id < b.id ? -1 : 1)
function run (label: string, trigger: boolean, data: typeof rows, upsert: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'ie-'))
  const db = new Database(join(dir, 'x.sqlite'))
  db.pragma('journal_mode = WAL'); db.pragma('synchronous = NORMAL')
  db.exec(`CREATE TABLE objects (seq INTEGER PRIMARY KEY, firm_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
  CREATE UNIQUE INDEX objects_key ON objects (firm_id, type, id);
  CREATE TABLE collections (firm_id TEXT NOT NULL, type TEXT NOT NULL, objects INTEGER NOT NULL, PRIMARY KEY (firm_id, type));`)
  if (trigger) db.exec(`CREATE TRIGGER c AFTER INSERT ON objects BEGIN INSERT INTO collections (firm_id, type, objects) VALUES (new.firm_id, new.type, 1) ON CONFLICT (firm_id, type) DO UPDATE SET objects = objects + 1; END;`)
  const ins = db.prepare(upsert ? 'INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT (firm_id, type, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at' : 'INSERT INTO objects (firm_id, type, id, doc, created_at, updated_at) VALUES (?,?,?,?,?,?)')
  const t0 = performance.now()
  db.transaction(() => { for (const r of data) ins.run('f', 't', r.id, r.doc, 1, 1) })()
  const ms = performance.now() - t0
  db.close(); rmSync(dir, { recursive: true })
  console.log(label.padEnd(30), ms.toFixed(0))
}
for (let i = 0; i < 2; i++) {
  run('bare random', false, rows, false)
  run('upsert random', false, rows, true)
  run('upsert random + trigger', true, rows, true)
  run('upsert sorted + trigger', true, sorted, true)
  run('upsert sorted', false, sorted, true)
}
