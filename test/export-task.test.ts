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
