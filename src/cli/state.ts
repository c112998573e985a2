import { randomUUID } from 'node:crypto'
import { open, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'

/** A finished page of a pull, as the state file keeps it. */
interface DonePage {
  index: number
  requestId: string
  cursor: string | null
  /** The page's file in the output directory (absent with --merge: it went into the merged file). */
  file?: string
  total: number
  bytes: number
  sha256: string
}

/** What a pull has done so far: enough to go on where it stopped. */
export interface PullState {
  version: 1
  url: string
  firmId: string
  objectType: string
  merge: boolean
  /** Names the pull for the server's Idempotency-Key, so a restart finds the job it had started. */
  runId: string
  pages: DonePage[]
  /** The cursor of the next page to export (null: the first page; undefined never). */
  next: string | null
  done: boolean
  /** With --merge: how many bytes of the merged file are whole pages. */
  mergedBytes: number
  objects: number
}

const STATE_FILE = '.bulk-export-state.json'

/** The state of a pull in `dir`, if one was begun there. */
export async function readState (dir: string): Promise<PullState | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as PullState
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`${join(dir, STATE_FILE)} cannot be read (${(err as Error).message}); remove it to start the pull over`)
  }
}

/** A new pull's state. */
export function newState (pull: Pick<PullState, 'url' | 'firmId' | 'objectType' | 'merge'>, cursor: string | null): PullState {
  return { version: 1, ...pull, runId: randomUUID(), pages: [], next: cursor, done: false, mergedBytes: 0, objects: 0 }
}

/** Writes the state whole or not at all: a temporary file, fsynced, renamed over the old one, the rename fsynced. */
export async function writeState (dir: string, state: PullState): Promise<void> {
  const path = join(dir, STATE_FILE)
  const tmp = `${path}.tmp`
  const file = await open(tmp, 'w')
  try {
    await file.writeFile(JSON.stringify(state, null, 2) + '\n')
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(tmp, path)
  const d = await open(dir, 'r')
  try { await d.sync() } finally { await d.close() }
}
