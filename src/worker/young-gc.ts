import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = (options: { type: 'minor' }) => void

/** V8's `gc` function for this thread, or undefined where it cannot be exposed. */
function exposedGc (): Gc | undefined {
  try {
    setFlagsFromString('--expose-gc')
    return runInNewContext('gc') as Gc
  } catch {
    return undefined
  }
}

/**
 * Frees, every `everyBytes` of Buffers a thread has let go of, what they hold outside
 * V8's heap. A batch of an export page comes back from SQLite as one Buffer of ~1–4 MB
 * whose wrapper is a few bytes of the young generation: V8 sees no reason to collect,
 * and the dead batches of a page (tens of MB) stayed allocated until the page ended. A
 * minor collection costs well under a millisecond on a worker's small heap; measured, it
 * kept an export page from adding ~25–30 MiB to the server's RSS. Where `gc` cannot be
 * exposed, the collector does nothing. (Setting a V8 flag after start is what Node calls
 * undefined behaviour; Node 20–24 allow it, and `--expose-gc` changes nothing else.)
 */
export function youngCollector (everyBytes = 4 * 1024 * 1024, gc: Gc | undefined = exposedGc()): (released: number) => void {
  let pending = 0
  return (released) => {
    pending += released
    if (gc === undefined || pending < everyBytes) return
    pending = 0
    gc({ type: 'minor' })
  }
}
