import tap from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { createUser, importLines } from './helpers/build.js'
import { buildExportApp, exportPage } from './helpers/exports.js'

/** The niceness of each thread of this process, by thread id (Linux: field 19 of /proc/self/task/<tid>/stat). */
function threadNiceness (): Map<number, number> {
  const out = new Map<number, number>()
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      // The command name (field 2) is in parentheses and may hold spaces: count after it.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(Number(tid), Number(fields[16]))
    } catch {}
  }
  return out
}

tap.test('worker threads (import, export) run below the event loop\'s priority; the event loop keeps its own', async (t) => {
  const before = threadNiceness()
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: '10' })
  const u = await createUser(app, ['acme'])
  await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}'])
  const page = await exportPage(app, u.headers, 'acme', 'users')
  t.equal(page.status.status, 'Completed', 'an export ran on a worker thread')
  const after = threadNiceness()
  const lowered = [...after].filter(([tid, nice]) => !before.has(tid) && nice === 10)
  t.ok(lowered.length >= 1, `a new thread runs at niceness 10 (${JSON.stringify([...after])})`)
  t.equal(after.get(process.pid), before.get(process.pid), 'the main thread (the event loop) keeps its niceness')
})
