/**
 * The real server as a child process (`node --import tsx src/server.ts`, or the build in
 * dist/), configured by environment variables as in production: what a soak or the demo
 * runs against. Its log is read, its exit watched, and its stop timed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * Node's flags for the server, as `npm start` passes them (package.json): semi-spaces of
 * 4 MiB in every thread (the main thread's instead of 16; the flag takes precedence over
 * the workers' own limits). Measured on this machine: the server's peak RSS ~45 MiB lower
 * under status load and exports, status reads/s unchanged.
 */
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=4']

/**
 * The environment `npm start` adds: glibc's malloc in at most two arenas instead of one
 * per thread that allocates (8 per core). Measured over an import and a pull of 1,000,000
 * objects: peak RSS ~20 MiB lower, the pull as fast.
 */
export const SERVER_ENV = { MALLOC_ARENA_MAX: '2' }
/** Every variable src/config.ts reads: none may leak in from the caller's environment. */
const CONFIG_VARS = ['PORT', 'HOST', 'DATA_DIR', 'ADMIN_TOKEN', 'EXPORT_JOB_SIZE', 'EXPORT_WORKERS', 'PUBLIC_URL',
  'FILE_TTL_SECONDS', 'LOG_LEVEL', 'IMPORT_MAX_BYTES', 'OBJECT_MAX_BYTES', 'SIGNING_SECRET', 'SHUTDOWN_GRACE_SECONDS',
  'RATE_LIMIT_POLLS_PER_MINUTE', 'RATE_LIMIT_STARTS_PER_MINUTE', 'MAX_URL_BYTES']

/** A free TCP port on 127.0.0.1 (closed again before the server binds it). */
export async function freePort (): Promise<number> {
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const addr = srv.address()
  srv.close()
  await once(srv, 'close')
  if (addr === null || typeof addr === 'string') throw new Error('no TCP address')
  return addr.port
}

/**
 * Waits until GET `readyz` (the server's /readyz) answers 200. `gone` says why waiting is
 * pointless (the server process has exited), so that a crash at start-up is reported as
 * such, not as a timeout.
 */
export async function waitReady (readyz: URL, timeoutMs: number, gone: () => string | undefined = () => undefined): Promise<void> {
  const t0 = performance.now()
  for (;;) {
    const why = gone()
    if (why) throw new Error(why)
    try {
      const res = await fetch(readyz, { signal: AbortSignal.timeout(timeoutMs) })
      await res.arrayBuffer()
      if (res.status === 200) return
    } catch {}
    if (performance.now() - t0 > timeoutMs) throw new Error(`the server at ${readyz.origin} was not ready within ${timeoutMs / 1000} s`)
    await sleep(100)
  }
}

/** How the server process ended. */
export interface ServerExit { code: number | null, signal: NodeJS.Signals | null }

/** Server output: JSON log lines on stdout counted by level, anything on stderr as other. */
export interface ServerLog { warn: number, error: number, other: number, samples: string[] }

/** A running server process. */
export interface ServerProcess {
  pid: number | undefined
  /** How it was started (`dist/server.js` or `--import tsx src/server.ts`). */
  args: string[]
  log: ServerLog
  /** Its exit, once it has exited. */
  exit: () => ServerExit | null
  /** SIGTERM, then SIGKILL after `timeoutMs`: clean when it exited 0 by itself. */
  stop: (timeoutMs: number) => Promise<{ ms: number, clean: boolean, how: string }>
  /** SIGKILL, at once, if it is still running. */
  kill: () => void
}

/**
 * Starts the server with only the configuration `config` sets, its output piped and
 * read. `onUnexpectedExit` hears of an exit that no `stop` asked for.
 */
export function startServerProcess (opts: { config: Record<string, string>, dist: boolean, maxLogSamples: number, onUnexpectedExit: (exit: ServerExit) => void }): ServerProcess {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const v of CONFIG_VARS) delete env[v]
  Object.assign(env, SERVER_ENV, opts.config)
  const useDist = opts.dist && existsSync(join(ROOT, 'dist/server.js'))
  const args = [...SERVER_NODE_FLAGS, ...(useDist ? ['dist/server.js'] : ['--import', 'tsx', 'src/server.ts'])]
  const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })

  const log: ServerLog = { warn: 0, error: 0, other: 0, samples: [] }
  const onLine = (line: string, stream: string): void => {
    if (line.trim() === '') return
    let level = 0
    try { level = (JSON.parse(line) as { level?: number }).level ?? 0 } catch {}
    if (level >= 50) log.error++
    else if (level >= 40) log.warn++
    else log.other++
    if (log.samples.length < opts.maxLogSamples) log.samples.push(`${stream}: ${line.slice(0, 400)}`)
  }
  if (child.stdout) createInterface({ input: child.stdout }).on('line', (l) => onLine(l, 'stdout'))
  if (child.stderr) createInterface({ input: child.stderr }).on('line', (l) => onLine(l, 'stderr'))

  let exit: ServerExit | null = null
  let stopping = false
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      exit = { code, signal }
      if (!stopping) opts.onUnexpectedExit(exit)
      resolve()
    })
  })
  const kill = (): void => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  // Never leave the server behind, whatever ends this process.
  process.on('exit', kill)

  return {
    pid: child.pid,
    args,
    log,
    exit: () => exit,
    kill,
    stop: async (timeoutMs) => {
      if (exit) return { ms: 0, clean: false, how: `already exited (${JSON.stringify(exit)})` }
      stopping = true
      const t0 = performance.now()
      child.kill('SIGTERM')
      const timedOut = await Promise.race([exited.then(() => false), sleep(timeoutMs).then(() => true)])
      if (timedOut) {
        child.kill('SIGKILL')
        await exited
        return { ms: performance.now() - t0, clean: false, how: `no exit ${timeoutMs / 1000} s after SIGTERM: SIGKILL` }
      }
      const e = exit as ServerExit | null
      return { ms: performance.now() - t0, clean: e?.code === 0, how: `SIGTERM → exit code ${e?.code ?? '–'}${e?.signal ? ` signal ${e.signal}` : ''}` }
    },
  }
}
