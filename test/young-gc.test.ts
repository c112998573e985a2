import tap from 'tap'
import { youngCollector } from '../src/worker/young-gc.js'

tap.test('the young collector frees dropped Buffers once enough bytes were released, not before', async (t) => {
  const collect = youngCollector(4 * 1024 * 1024)
  const held = (): number => process.memoryUsage().arrayBuffers
  // Buffers whose wrappers die young, as an export's batches do.
  const make = (): number => {
    let total = 0
    for (let i = 0; i < 8; i++) total += Buffer.alloc(1024 * 1024, i).length
    return total
  }
  collect(0)
  const before = held()
  const dropped = make()
  t.ok(held() - before >= 6 * 1024 * 1024, `the dropped Buffers are still held (${held() - before} B more)`)
  collect(1024)
  t.ok(held() - before >= 6 * 1024 * 1024, 'below the threshold nothing is collected')
  collect(dropped)
  t.ok(held() - before < 2 * 1024 * 1024, `past the threshold they are freed (${held() - before} B more than before)`)
})
