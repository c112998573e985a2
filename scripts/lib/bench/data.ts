/**
 * The benchmark's data: NDJSON files of deterministic SCIM-like users of a chosen size,
 * in random id order, written once to disk so that sending them costs the client little.
 */
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { makeUser, prng } from '../demo-data.js'

/** What a generated file holds. */
export interface Dataset { path: string, objects: number, bytes: number, avgBytes: number }

/**
 * One user of about `target` bytes: a compact one (~300 B: id, names, e-mail, state) for
 * small targets, the full SCIM user (~900 B) otherwise, padded with a `notes` string.
 */
function sized (rand: () => number, n: number, target: number): Record<string, unknown> {
  const full = makeUser(rand, n)
  const obj: Record<string, unknown> = target < 700
    ? { id: full.id, externalId: full.externalId, userName: full.userName, name: full.name, active: full.active, emails: full.emails, meta: { created: (full.meta as { created: string }).created } }
    : full
  const size = Buffer.byteLength(JSON.stringify(obj))
  if (size + 12 < target) obj.notes = 'n'.repeat(target - size - 12)
  return obj
}

/** Writes `objects` users of about `target` bytes as NDJSON to `path`. */
export async function writeDataset (path: string, objects: number, target: number, seed: number): Promise<Dataset> {
  const rand = prng(seed)
  const out = createWriteStream(path)
  let bytes = 0
  let chunk = ''
  for (let n = 0; n < objects; n++) {
    chunk += JSON.stringify(sized(rand, n, target)) + '\n'
    if (chunk.length > 1 << 20) {
      bytes += Buffer.byteLength(chunk)
      if (!out.write(chunk)) await once(out, 'drain')
      chunk = ''
    }
  }
  bytes += Buffer.byteLength(chunk)
  out.end(chunk)
  await once(out, 'finish')
  return { path, objects, bytes, avgBytes: bytes / objects - 1 }
}
