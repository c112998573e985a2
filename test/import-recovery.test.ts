import t from 'tap'
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { StageWriter } from '../src/worker/stage-file.js'
import { sqliteOf } from './helpers/build.js'

const doc = (id: string, v: number) => Buffer.from(JSON.stringify({ id, v }))

t.test('a restart finishes a valid import that was merging and drops one still staging', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-recover-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))

  // The state a stop leaves behind: one import proved valid whose merge did not commit,
  // one cut short while its body was read, and a stage file no import owns.
  const store = openSqliteStore(dataDir)
  const objects = store.objects
  const stageDir = join(dataDir, 'imports')
  mkdirSync(stageDir, { recursive: true })
  const writeStage = (name: string, lines: Array<[string, Buffer]>): void => {
    const fd = openSync(join(stageDir, name), 'w')
    const writer = new StageWriter(fd, 4096)
    for (const [id, d] of lines) writer.add(id, d)
    writer.flush()
    closeSync(fd)
  }
  await objects.insertImport('valid', 'acme', 'users', Date.now())
  writeStage('valid.stage', Array.from({ length: 5000 }, (_, i) => [`u-${i % 4000}`, doc(`u-${i % 4000}`, i)]))
  await objects.markImportMerging('valid')
  await objects.insertImport('partial', 'acme', 'groups', Date.now())
  writeStage('partial.stage', [['g-1', doc('g-1', 1)]])
  writeStage('stray.stage', [['x-1', doc('x-1', 1)]])
  await store.close()

  const app = await buildApp(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent' }))
  t.teardown(() => app.close())
  const count = (sql: string) => (sqliteOf(app).prepare(sql).pluck().get() as number)
  t.equal(count("SELECT count(*) FROM objects WHERE firm_id = 'acme' AND type = 'users'"), 4000, 'every id of the valid import is there once')
  // Ids 0..999 appear twice (lines 1..1000 and 4001..5000): the later line wins.
  const first = sqliteOf(app).prepare("SELECT doc FROM objects WHERE firm_id = 'acme' AND type = 'users' AND id = 'u-10'").pluck().get() as Buffer
  t.same(JSON.parse(first.toString()), { id: 'u-10', v: 4010 }, 'an id repeated in the body keeps its last line')
  t.equal(count("SELECT count(*) FROM objects WHERE type = 'groups'"), 0, 'nothing of the partial import was applied')
  t.same(readdirSync(join(dataDir, 'imports')), [], 'no stage file is left')
  t.equal(count('SELECT count(*) FROM imports'), 0, 'no import is left open')
})
