import tap from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { youngCollector } from '../src/worker/young-gc.js'

tap.test('the young collector collects once enough bytes were released, and then counts again', async (t) => {
  const calls: unknown[] = []
  const collect = youngCollector(4 * 1024 * 1024, (options) => { calls.push(options) })
  collect(1024 * 1024)
  collect(2 * 1024 * 1024)
  t.equal(calls.length, 0, 'below the threshold (3 of 4 MiB) nothing is collected')
  collect(1024 * 1024)
  t.same(calls, [{ type: 'minor' }], 'at the threshold one minor collection runs')
  collect(3 * 1024 * 1024)
  t.equal(calls.length, 1, 'the count starts again after a collection')
  const none = youngCollector(1, undefined)
  t.doesNotThrow(() => none(1024), 'without a gc function it does nothing')
})

tap.test('the collection it runs frees dropped Buffers', async (t) => {
  const collect = youngCollector(1)
  const held = (): number => process.memoryUsage().arrayBuffers
  const before = held()
  let dropped = 0
  // Buffers whose wrappers die young, as an export's batches do (8 MiB: too little to make V8 collect by itself).
  for (let i = 0; i < 8; i++) dropped += Buffer.alloc(1024 * 1024, i).length
  t.ok(held() - before >= 6 * 1024 * 1024, `the dropped Buffers are still held (${held() - before} B more)`)
  collect(dropped)
  // Backing stores are released by a sweeper thread after the collection: wait for it.
  for (let waited = 0; held() - before >= 2 * 1024 * 1024 && waited < 30_000; waited += 20) await sleep(20)
  t.ok(held() - before < 2 * 1024 * 1024, `they are freed (${held() - before} B more than before)`)
})
