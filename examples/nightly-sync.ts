/**
 * A nightly sync with the typed client: every object of one collection, verified, in
 * constant memory, resumable from the last cursor it saved. Run it with
 *
 *   BULK_EXPORT_URL=http://127.0.0.1:3000 BULK_EXPORT_TOKEN=bes_… \
 *     npx tsx examples/nightly-sync.ts demo users
 *
 * It prints how many objects it read; replace `handle` with what your sync does.
 */
import { createBulkExportClient } from '../src/client/index.js'

const [firmId = 'demo', objectType = 'users'] = process.argv.slice(2)
const client = createBulkExportClient({ baseUrl: process.env.BULK_EXPORT_URL ?? 'http://127.0.0.1:3000', token: process.env.BULK_EXPORT_TOKEN ?? '' })

// Your code: here it only counts.
let count = 0
function handle (object: Record<string, unknown>): void {
  if (typeof object.id === 'string') count++
}

const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
for await (const object of client.exportAll({
  firmId,
  objectType,
  signal: stop.signal,
  onProgress: (p) => { if (p.status === 'Completed') console.error(`page ${p.page}: ${p.done + p.processed} objects so far, about ${p.remaining ?? '?'} to go`) },
})) {
  handle(object)
}
console.log(`${count} ${objectType} of ${firmId}, each exactly once and verified`)
