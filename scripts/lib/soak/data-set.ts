/** The soak's data set: seeded into the store, and kept to check every exported line against. */
import { performance } from 'node:perf_hooks'
import { openSqliteStore } from '../../../src/store/sqlite/sqlite-store.js'
import { makeUser, objectBatches } from '../demo-data.js'
import { fmt } from '../format.js'

const SEED_BATCH = 10_000

/** Each seeded object's exact JSON bytes, and where an id's bytes are. */
export interface DataSet {
  index: Map<string, number>
  docs: Buffer[]
}

/**
 * Seeds `objects` SCIM-like users (scripts/lib/demo-data.ts) into the store in `dataDir`,
 * opened in this process and closed again before the server starts on it.
 */
export async function seedDataSet (dataDir: string, firm: string, type: string, objects: number): Promise<DataSet> {
  const t0 = performance.now()
  const index = new Map<string, number>()
  const docs: Buffer[] = []
  const store = openSqliteStore(dataDir)
  try {
    for (const batch of objectBatches(makeUser, 1, objects, SEED_BATCH)) {
      // A repeated random id would upsert: keep the first one only.
      const rows = batch.filter(({ id, doc }) => {
        if (index.has(id)) return false
        index.set(id, docs.length)
        docs.push(doc)
        return true
      })
      await store.objects.upsertObjects(firm, type, rows, Date.now())
    }
    const stored = await store.objects.countObjects(firm, type)
    if (stored !== docs.length) throw new Error(`seeded ${stored} objects, expected ${docs.length}`)
  } finally {
    await store.close()
  }
  const bytes = docs.reduce((s, d) => s + d.length, 0)
  console.log(`seeded ${fmt(docs.length)} objects (${fmt(bytes / 1e6, 1)} MB of JSON) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  return { index, docs }
}
