import t, { type Test } from 'tap'
import * as fs from 'node:fs'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js'
import type { ExportOutcome, ExportTask } from '../src/worker/export-task.js'

type Call = [op: 'open' | 'fsync' | 'close' | 'rename', ...args: string[]]

/**
 * The worker's export task, run in this thread with node:fs wrapped so that every open,
 * fsync (with the size of what it makes durable), close and rename is recorded, by path,
 * before it is carried out.
 */
async function recordedTask (t: Test): Promise<{ run: (task: ExportTask) => ExportOutcome, calls: Call[] }> {
  const calls: Call[] = []
  const paths = new Map<number, string>()
  const recording = {
    ...fs,
    openSync: (path: fs.PathLike, flags: fs.OpenMode, mode?: fs.Mode) => {
      const fd = fs.openSync(path, flags, mode)
      paths.set(fd, String(path))
      calls.push(['open', String(path)])
      return fd
    },
    fsyncSync: (fd: number) => {
      const stat = fs.fstatSync(fd)
      calls.push(['fsync', paths.get(fd) ?? '?', stat.isFile() ? `${stat.size} bytes` : 'directory'])
      fs.fsyncSync(fd)
    },
    closeSync: (fd: number) => {
      calls.push(['close', paths.get(fd) ?? '?'])
      fs.closeSync(fd)
    },
    renameSync: (from: fs.PathLike, to: fs.PathLike) => {
      calls.push(['rename', String(from), String(to)])
      fs.renameSync(from, to)
    },
  }
  const mod = await t.mockImport<typeof import('../src/worker/export-task.js')>('../src/worker/export-task.js', { 'node:fs': recording })
  return { run: mod.default, calls }
}

t.test('the worker fsyncs the file, then renames it into place, then fsyncs the directory', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bes-task-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = openSqliteStore(join(dir, 'data'))
  await store.objects.upsertObjects('acme', 'users', [1, 2, 3].map((i) => ({ id: `u-${i}`, doc: Buffer.from(`{"id":"u-${i}"}`) })), Date.now())
  await store.close()

  const { run, calls } = await recordedTask(t)
  const files = join(dir, 'files')
  fs.mkdirSync(files)
  const { port1, port2 } = new MessageChannel()
  port1.unref()
  const task: ExportTask = {
    source: { dialect: 'sqlite', path: join(dir, 'data', 'bulk-export.sqlite') },
    firmId: 'acme',
    objectType: 'users',
    after: '',
    limit: 10,
    tmpPath: join(files, '.job.1.tmp'),
    finalPath: join(files, 'job.ndjson'),
    port: port2,
    progressEvery: 1000,
  }
  const outcome = run(task)
  t.match(outcome, { ok: true, total: 3, bytes: 39 }, 'the page is written')
  t.equal(fs.readFileSync(task.finalPath, 'utf8'), '{"id":"u-1"}\n{"id":"u-2"}\n{"id":"u-3"}\n')

  const ops = calls.filter(([op]) => op !== 'open').map((c) => c.join(' '))
  t.same(ops, [
    `fsync ${task.tmpPath} ${outcome.ok && outcome.bytes} bytes`,
    `close ${task.tmpPath}`,
    `rename ${task.tmpPath} ${task.finalPath}`,
    `fsync ${dirname(task.finalPath)} directory`,
    `close ${dirname(task.finalPath)}`,
  ], 'the file reaches the disk before it gets its final name, and the rename reaches it before the job is reported done')
})

t.test('a page of several database batches: exact bytes in key order, its hash, where it ends and its progress', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bes-task-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = openSqliteStore(join(dir, 'data'))
  // 5,003 objects inserted in random order, with multi-byte text and escapes, and another collection around them.
  const ids = Array.from({ length: 5003 }, (_, i) => `u-${String(i).padStart(5, '0')}`)
  const docOf = (id: string): string => JSON.stringify({ id, name: `Zoë ${id} 東京 \u2028`, note: 'a "quoted" \\ line' })
  const shuffled = [...ids].sort(() => Math.random() - 0.5)
  await store.objects.upsertObjects('acme', 'users', shuffled.map((id) => ({ id, doc: Buffer.from(docOf(id)) })), Date.now())
  await store.objects.upsertObjects('acme', 'groups', [{ id: 'g-1', doc: Buffer.from('{"id":"g-1"}') }], Date.now())
  await store.objects.upsertObjects('acme', 'users0', [{ id: 'a', doc: Buffer.from('{"id":"a"}') }], Date.now())
  await store.close()

  const { default: exportTask } = await import('../src/worker/export-task.js')
  const { createHash } = await import('node:crypto')
  const files = join(dir, 'files')
  fs.mkdirSync(files)
  const pageOf = (after: string, limit: number, name: string) => {
    const { port1, port2 } = new MessageChannel()
    const messages: unknown[] = []
    port1.on('message', (m) => messages.push(m))
    const outcome = exportTask({
      source: { dialect: 'sqlite', path: join(dir, 'data', 'bulk-export.sqlite') },
      firmId: 'acme',
      objectType: 'users',
      after,
      limit,
      tmpPath: join(files, `.${name}.tmp`),
      finalPath: join(files, `${name}.ndjson`),
      port: port2,
      progressEvery: 1000,
    })
    // The task closes its end of the channel: every message it posted has arrived once this end hears of it.
    const delivered = new Promise((resolve) => port1.once('close', resolve))
    return { outcome, messages, delivered, body: fs.readFileSync(join(files, `${name}.ndjson`)) }
  }
  const expectBody = (slice: string[]): string => slice.map((id) => docOf(id) + '\n').join('')

  const first = pageOf('', 4500, 'first')
  t.equal(first.body.toString('utf8'), expectBody(ids.slice(0, 4500)), 'the first 4,500 objects, byte for byte, in key order')
  t.match(first.outcome, { ok: true, total: 4500, bytes: first.body.length, lastId: ids[4499], hasMore: true, sha256: createHash('sha256').update(first.body).digest('hex') })
  await first.delivered
  const [announced, ...progress] = first.messages as Array<{ expected?: number, processed?: number }>
  t.same(announced, { expected: 4500 }, 'the page size is announced first')
  const processed = progress.map((m) => m.processed as number)
  t.equal(processed.at(-1), 4500, 'progress ends at the page size')
  t.ok(processed.every((n, i) => i === 0 || n > processed[i - 1]), `progress only grows (${processed.join(', ')})`)
  t.ok(processed.slice(0, -1).every((n, i) => i === 0 || Math.floor(n / 1000) > Math.floor(processed[i - 1] / 1000)), 'at most one report per 1,000 rows (progressEvery)')
  t.ok(processed.every((n, i) => n - (i === 0 ? 0 : processed[i - 1]) <= 3000), 'a report at least every 3,000 rows (progressEvery plus a batch of 2,000)')

  const rest = pageOf(ids[4499], 4500, 'rest')
  t.equal(rest.body.toString('utf8'), expectBody(ids.slice(4500)), 'the next page starts after the cursor and holds the rest')
  t.match(rest.outcome, { ok: true, total: 503, lastId: ids.at(-1), hasMore: false })

  const exact = pageOf(ids[2999], 2003, 'exact')
  t.match(exact.outcome, { ok: true, total: 2003, lastId: ids.at(-1), hasMore: false }, 'a page that ends exactly at the last object says nothing follows')

  const none = pageOf(ids.at(-1) as string, 10, 'none')
  t.match(none.outcome, { ok: true, total: 0, bytes: 0, lastId: null, hasMore: false }, 'after the last object: an empty page')
  t.equal(none.body.length, 0)
})

t.test('a page of many tiny objects and then large ones (batches sized by the largest seen) is whole, byte for byte', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bes-task-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = openSqliteStore(join(dir, 'data'))
  // 3,000 ids in key order; from the 2,950th on each object is ~700 KB (a batch of
  // 2,000 of those would be over 1 GB, past what SQLite holds in one value).
  const ids = Array.from({ length: 3000 }, (_, i) => `k-${String(i).padStart(4, '0')}`)
  const docOf = (id: string, i: number): string => JSON.stringify({ id, big: i >= 2950 ? 'x'.repeat(700_000 + i) : `small ${i}` })
  await store.objects.upsertObjects('acme', 'mixed', ids.map((id, i) => ({ id, doc: Buffer.from(docOf(id, i)) })), Date.now())
  await store.close()

  const { default: exportTask } = await import('../src/worker/export-task.js')
  const files = join(dir, 'files')
  fs.mkdirSync(files)
  const { port1, port2 } = new MessageChannel()
  port1.unref()
  const outcome = exportTask({
    source: { dialect: 'sqlite', path: join(dir, 'data', 'bulk-export.sqlite') },
    firmId: 'acme',
    objectType: 'mixed',
    after: '',
    limit: 5000,
    tmpPath: join(files, '.mixed.tmp'),
    finalPath: join(files, 'mixed.ndjson'),
    port: port2,
    progressEvery: 1000,
  })
  const body = fs.readFileSync(join(files, 'mixed.ndjson'))
  const expected = Buffer.from(ids.map((id, i) => docOf(id, i) + '\n').join(''))
  t.match(outcome, { ok: true, total: 3000, bytes: expected.length, lastId: 'k-2999', hasMore: false })
  t.ok(body.equals(expected), `the file is every object in key order (${body.length} of ${expected.length} bytes)`)
})
