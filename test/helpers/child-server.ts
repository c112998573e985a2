import Database from 'better-sqlite3'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ExportJob } from '../../src/store/exports-store.js'
import { DB_FILE } from '../../src/store/sqlite/connection.js'
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { ADMIN_TOKEN } from './build.js'
import { NO_RATE_LIMITS } from './exports.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

interface TapLike {
  teardown: (fn: () => unknown) => void
}

/** Polls `fn` until it returns a value other than undefined, or throws at the deadline. */
export async function until<T> (what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 60_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await fn()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** Resolves as `promise` does, or rejects after `ms` (for what must happen, however long it takes on a loaded machine). */
export async function within<T> (what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

/** A server started as `node --import tsx src/server.ts`, as a self-hoster runs it. */
export interface ServerProcess {
  /** http://127.0.0.1:<port> */
  base: string
  child: ChildProcessWithoutNullStreams
  /** Resolves when the process has exited and its output is drained. */
  exited: Promise<Exit>
  stdout: () => string
  stderr: () => string
  /** The JSON log lines written so far. */
  logs: () => Array<Record<string, unknown> & { level: number, msg?: string }>
}

/**
 * Starts the server on DATA_DIR `dataDir` (PORT=0, LOG_LEVEL=info, rate limits lifted,
 * `env` on top), waits for its listening line, and SIGKILLs it in teardown if it is
 * still running. The environment is built from scratch so nothing leaks in.
 */
export async function startServer (t: TapLike, dataDir: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  // HOLD_EXPORTS_FILE: the export pages' ends are held while that file exists (hold-exports.ts).
  const hold = env.HOLD_EXPORTS_FILE ? ['--import', './test/helpers/hold-exports.ts'] : []
  const child = spawn(process.execPath, ['--import', 'tsx', ...hold, 'src/server.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      ADMIN_TOKEN,
      LOG_LEVEL: 'info',
      EXPORT_WORKERS: '1',
      ...NO_RATE_LIMITS,
      ...env,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const running = (): boolean => child.exitCode === null && child.signalCode === null
  // A last resort: nothing outlives its test, even one that hangs.
  const killer = setTimeout(() => { if (running()) child.kill('SIGKILL') }, 120_000)
  killer.unref()
  t.teardown(() => {
    clearTimeout(killer)
    if (running()) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  const base = await until('the listening log line', () => {
    const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)
    if (m) return m[1]
    if (!running()) throw new Error(`the server exited early: ${stderr}${stdout}`)
    return undefined
  }, 60_000)
  return {
    base,
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    logs: () => stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line)),
  }
}

/** Waits for the process to exit, or throws after `ms`. */
export async function waitForExit (server: ServerProcess, ms = 30_000): Promise<Exit> {
  return within('the server to exit', ms, server.exited)
}

export interface ApiResponse { status: number, headers: Headers, body: string, json: () => any }

/** One request over a real socket; `body` is sent as JSON. */
export async function api (base: string, method: string, path: string, options: { headers?: Record<string, string>, body?: unknown } = {}): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(base + path, {
    method,
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  })
  const body = await res.text()
  return { status: res.status, headers: res.headers, body, json: () => JSON.parse(body) }
}

/** Creates a firm and a user in it through the admin API; returns the user's auth headers. */
export async function createUserOver (base: string, firmId: string, name = 'tester'): Promise<{ userId: string, headers: Record<string, string> }> {
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
  const firm = await api(base, 'PUT', `/api/v1/admin/firms/${firmId}`, { headers: admin })
  if (firm.status >= 300) throw new Error(`putFirm: ${firm.status} ${firm.body}`)
  const user = await api(base, 'POST', '/api/v1/admin/users', { headers: admin, body: { name, firms: [firmId] } })
  if (user.status !== 201) throw new Error(`createUser: ${user.status} ${user.body}`)
  return { userId: user.json().userId, headers: { authorization: `Bearer ${user.json().token}` } }
}

/** What a whole export of a seeded collection must be. */
export interface Seeded { count: number, bytes: number, sha256: string, firstId: string, lastId: string }

/**
 * Writes `count` objects of about `docBytes` bytes straight into the store of `dataDir`
 * (ids in key order), the way the demo seed does, and closes it. Returns the size and
 * SHA-256 the NDJSON file of the whole collection must have.
 */
export async function seedDataDir (dataDir: string, firmId: string, type: string, count: number, docBytes = 900): Promise<Seeded> {
  const store = openSqliteStore(dataDir)
  try {
    const objects = store.objects
    const hash = createHash('sha256')
    let bytes = 0
    const id = (i: number): string => `obj-${String(i).padStart(7, '0')}`
    const batch = 10_000
    for (let start = 0; start < count; start += batch) {
      const rows: Array<{ id: string, doc: Buffer }> = []
      for (let i = start; i < Math.min(count, start + batch); i++) {
        const head = `{"id":"${id(i)}","n":${i},"pad":"`
        const doc = Buffer.from(head + 'x'.repeat(Math.max(0, docBytes - head.length - 2)) + '"}')
        rows.push({ id: id(i), doc })
        hash.update(doc).update('\n')
        bytes += doc.length + 1
      }
      await objects.upsertObjects(firmId, type, rows, Date.now())
    }
    return { count, bytes, sha256: hash.digest('hex'), firstId: id(0), lastId: id(count - 1) }
  } finally {
    await store.close()
  }
}

/** The columns of a job row the process tests look at. */
export type JobRecord = Pick<ExportJob, 'id' | 'status' | 'attempts' | 'processed' | 'total' | 'fileName' | 'sha256' | 'errorCode' | 'errorMessage' | 'startedAt' | 'finishedAt' | 'expiresAt'>

/** Reads one job row straight from the database file (read-only; the server may be down). */
export function readJobRow (dataDir: string, requestId: string): JobRecord | undefined {
  const db = new Database(join(dataDir, DB_FILE), { readonly: true, fileMustExist: true })
  try {
    return db.prepare<[string], JobRecord>(`SELECT id, status, attempts, processed, total, file_name AS fileName,
      sha256, error_code AS errorCode, error_message AS errorMessage, started_at AS startedAt,
      finished_at AS finishedAt, expires_at AS expiresAt FROM export_jobs WHERE id = ?`).get(requestId)
  } finally {
    db.close()
  }
}

/** The SHA-256 of some bytes, hex. */
export function sha256 (bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** The number of '\n'-terminated lines; throws when the last line is unterminated. */
export function countLines (file: Buffer): number {
  if (file.length > 0 && file[file.length - 1] !== 0x0a) throw new Error('the file does not end with a newline')
  let n = 0
  for (let i = file.indexOf(0x0a); i !== -1; i = file.indexOf(0x0a, i + 1)) n++
  return n
}
