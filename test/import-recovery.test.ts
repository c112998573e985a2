import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { sqliteOf } from './helpers/build.js'

const doc = (id: string, v: number) => Buffer.from(JSON.stringify({ id, v }))

t.test('a restart finishes a valid import that was merging and drops one still staging', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-recover-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))

  // The state a stop leaves behind: one import proved valid and half merged, one cut short.
  const store = openSqliteStore(dataDir)
  const objects = store.objects
  await objects.insertImport('valid', 'acme', 'users', Date.now())
  await objects.insertStagedRows('valid', Array.from({ length: 5000 }, (_, i) => ({ seq: i + 1, id: `u-${i % 4000}`, doc: doc(`u-${i % 4000}`, i) })))
  await objects.markImportMerging('valid')
  // A first batch had been merged (lines 1..1000) when the server stopped.
  await objects.mergeStagedRows('valid', 'acme', 'users', 1000, Date.now())
  t.equal(await objects.deleteStagedRows('valid', 1000), 1000, 'a first batch had been merged')
  await objects.insertImport('partial', 'acme', 'groups', Date.now())
  await objects.insertStagedRows('partial', [{ seq: 1, id: 'g-1', doc: doc('g-1', 1) }])
  await store.close()

  const app = await buildApp(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent' }))
  t.teardown(() => app.close())
  const count = (sql: string) => (sqliteOf(app).prepare(sql).pluck().get() as number)
  t.equal(count("SELECT count(*) FROM objects WHERE firm_id = 'acme' AND type = 'users'"), 4000, 'every id of the valid import is there once')
  // Ids 0..999 appear twice (lines 1..1000 and 4001..5000): the later line wins.
  const first = sqliteOf(app).prepare("SELECT doc FROM objects WHERE firm_id = 'acme' AND type = 'users' AND id = 'u-10'").pluck().get() as Buffer
  t.same(JSON.parse(first.toString()), { id: 'u-10', v: 4010 }, 'an id repeated in the body keeps its last line across batches')
  t.equal(count("SELECT count(*) FROM objects WHERE type = 'groups'"), 0, 'nothing of the partial import was applied')
  t.equal(count('SELECT count(*) FROM import_rows'), 0, 'no staged row is left')
  t.equal(count('SELECT count(*) FROM imports'), 0, 'no import is left open')
})
