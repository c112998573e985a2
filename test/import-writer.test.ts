import tap from 'tap'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openSqliteImportWriter } from '../src/store/sqlite/import-writer.js'

const openFds = (): number => readdirSync('/proc/self/fd').length

tap.test('an import connection that cannot be set up is closed, not leaked', async (t) => {
  const path = join(t.testdir(), 'not-a-database.sqlite')
  writeFileSync(path, Buffer.alloc(8192, 0x41))
  const before = openFds()
  for (let i = 0; i < 3; i++) t.throws(() => openSqliteImportWriter(path), /not a database/)
  t.equal(openFds(), before, 'no file handle is left open')
})
