import { hostname } from 'node:os'
import { lstat, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import lockfile from 'proper-lockfile'

/**
 * The lock: a directory made with mkdir (atomic on every file system the CLI writes to),
 * whose mtime the holder refreshes every second. A holder that stops refreshing (killed,
 * whether or not it was reaped, on this machine or another sharing the directory) leaves
 * a lock that is stale after LOCK_STALE_MS, and the next pull takes it over. Nothing here
 * trusts a pid: pids outlive their processes as zombies and are reused after a reboot.
 */
const LOCK = '.bulk-export.lock'
/** Who holds the lock, for the messages only (never to decide). */
const OWNER = '.bulk-export.owner'
const LOCK_STALE_MS = 5000
const LOCK_REFRESH_MS = 1000
/** How long a pull waits for a lock that is held: long enough for a dead holder's lock to go stale. */
const LOCK_WAIT_MS = LOCK_STALE_MS + 2 * LOCK_REFRESH_MS

interface Owner { pid: number, host: string, since: string }

/** Why a pull stopped: another process took its directory over, or the lock could not be kept. */
class LockLostError extends Error {}

async function readOwner (dir: string): Promise<Owner | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, OWNER), 'utf8')) as Owner
  } catch {
    return undefined
  }
}

const describe = (owner: Owner | undefined): string =>
  owner ? `pid ${owner.pid} on ${owner.host === hostname() ? 'this machine' : owner.host}, since ${owner.since}` : 'its owner unknown'

export interface LockOptions {
  /** Told once when the lock is held by another pull and this one waits for it. */
  onWait: (message: string) => void
  /** Called when the lock is lost while held (the pull must stop). */
  onLost: (err: LockLostError) => void
  signal?: AbortSignal
}

/**
 * Takes `dir` for this process, so that two pulls into one directory (a cron run
 * overlapping another) cannot mix their files. A lock held by a live pull is waited for
 * up to LOCK_WAIT_MS, then refused; one whose holder died is stale within LOCK_STALE_MS
 * and taken over. Resolves with the release.
 */
export async function lockDir (dir: string, opts: LockOptions): Promise<() => Promise<void>> {
  const path = join(dir, LOCK)
  // Earlier versions kept a file holding a pid here: it says nothing about a live pull.
  if ((await lstat(path).catch(() => undefined))?.isFile()) await rm(path, { force: true })
  const deadline = Date.now() + LOCK_WAIT_MS
  let told = false
  for (;;) {
    try {
      const release = await lockfile.lock(dir, {
        lockfilePath: path,
        realpath: false,
        stale: LOCK_STALE_MS,
        update: LOCK_REFRESH_MS,
        onCompromised: (err) => opts.onLost(new LockLostError(`the lock on ${dir} was lost (${err.message}): another bulk-export may have taken the directory over; stopped so that the two do not mix their files`)),
      })
      await writeFile(join(dir, OWNER), JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() } satisfies Owner) + '\n')
      return async () => {
        await rm(join(dir, OWNER), { force: true })
        await release().catch(() => {})
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err
      const owner = await readOwner(dir)
      if (Date.now() >= deadline) {
        throw new Error(`another bulk-export (${describe(owner)}) is pulling into ${dir}; wait for it, or use another --out`)
      }
      if (!told) {
        told = true
        opts.onWait(`${dir} is locked by another bulk-export (${describe(owner)}); waiting up to ${Math.round(LOCK_WAIT_MS / 1000)} s for it to end (a pull that was killed leaves a lock that goes stale within ${LOCK_STALE_MS / 1000} s)\n`)
      }
      await sleep(200, undefined, { signal: opts.signal })
    }
  }
}
