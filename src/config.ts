import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'

/** The server's whole configuration, read once from the environment. */
export interface Config {
  readonly port: number
  readonly host: string
  readonly dataDir: string
  /** Guards the admin API; when unset the admin API answers 401 to everyone. */
  readonly adminToken: string | undefined
  readonly exportJobSize: number
  readonly exportWorkers: number
  /** Base for absolute URLs handed to clients; the request's own host when unset. */
  readonly publicUrl: string | undefined
  readonly fileTtlSeconds: number
  readonly logLevel: string
  readonly importMaxBytes: number
  readonly objectMaxBytes: number
  /** Signs cursors and download URLs; generated and kept in DATA_DIR when unset. */
  readonly signingSecret: string | undefined
  /** How long a stop waits for running export jobs before requeueing them. */
  readonly shutdownGraceSeconds: number
  /** Per-token limits, per minute: status reads (polling) and export starts. */
  readonly rateLimitPollsPerMinute: number
  readonly rateLimitStartsPerMinute: number
  /** Longest request URL (414 beyond). */
  readonly maxUrlBytes: number
  /**
   * Which proxies' X-Forwarded-For/-Host/-Proto to believe (Fastify's trustProxy): none,
   * any (`true`), or these addresses and CIDR ranges.
   */
  readonly trustProxy: boolean | string
}

/** A configuration value that cannot be used; the message names the variable. */
export class ConfigError extends Error {
  constructor (readonly variable: string, reason: string, value: string) {
    super(`invalid configuration: ${variable}=${JSON.stringify(value)}: ${reason}`)
    this.name = 'ConfigError'
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

type Env = Record<string, string | undefined>

function int (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number from ${min} to ${max}`, raw)
  const n = Number(raw.trim())
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}`, raw)
  }
  return n
}

function str (env: Env, name: string): string | undefined {
  const raw = env[name]
  return raw === undefined || raw === '' ? undefined : raw
}

function publicUrl (env: Env): string | undefined {
  const raw = str(env, 'PUBLIC_URL')
  if (raw === undefined) return undefined
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError('PUBLIC_URL', 'must be an absolute http(s) URL such as https://export.example.com', raw)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError('PUBLIC_URL', 'must use http or https', raw)
  }
  if (url.search || url.hash) throw new ConfigError('PUBLIC_URL', 'must not have a query or fragment', raw)
  return url.href.replace(/\/+$/, '')
}

function trustProxy (env: Env): boolean | string {
  const raw = str(env, 'TRUST_PROXY')
  if (raw === undefined || raw === 'false') return false
  if (raw === 'true') return true
  const list = raw.split(',').map((a) => a.trim())
  if (list.some((a) => !/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(a))) {
    throw new ConfigError('TRUST_PROXY', 'must be true, false, or the comma-separated IP addresses or CIDR ranges of the proxies', raw)
  }
  return list.join(',')
}

/**
 * Reads and validates the configuration. Throws ConfigError naming the first bad
 * variable and why, so start-up can exit with a message a person can act on.
 */
export function loadConfig (env: Env = process.env): Config {
  const logLevel = str(env, 'LOG_LEVEL') ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`, logLevel)
  }
  const host = str(env, 'HOST') ?? '127.0.0.1'
  if (/\s/.test(host)) throw new ConfigError('HOST', 'must be a host name or IP address', host)
  const secret = str(env, 'SIGNING_SECRET')
  if (secret !== undefined && secret.length < 32) {
    throw new ConfigError('SIGNING_SECRET', 'must be at least 32 characters', '<hidden>')
  }
  const objectMaxBytes = int(env, 'OBJECT_MAX_BYTES', 1024 * 1024, 64, 64 * 1024 * 1024)
  const importMaxBytes = int(env, 'IMPORT_MAX_BYTES', 1024 * 1024 * 1024, 1, Number.MAX_SAFE_INTEGER)
  return Object.freeze({
    port: int(env, 'PORT', 3000, 0, 65535),
    host,
    dataDir: resolve(str(env, 'DATA_DIR') ?? './data'),
    adminToken: str(env, 'ADMIN_TOKEN'),
    exportJobSize: int(env, 'EXPORT_JOB_SIZE', 100_000, 1, 10_000_000),
    exportWorkers: int(env, 'EXPORT_WORKERS', Math.max(1, availableParallelism() - 1), 1, 64),
    publicUrl: publicUrl(env),
    fileTtlSeconds: int(env, 'FILE_TTL_SECONDS', 86_400, 1, 365 * 86_400),
    logLevel,
    importMaxBytes,
    objectMaxBytes,
    signingSecret: secret,
    shutdownGraceSeconds: int(env, 'SHUTDOWN_GRACE_SECONDS', 10, 0, 3600),
    rateLimitPollsPerMinute: int(env, 'RATE_LIMIT_POLLS_PER_MINUTE', 6000, 1, 1_000_000),
    rateLimitStartsPerMinute: int(env, 'RATE_LIMIT_STARTS_PER_MINUTE', 600, 1, 1_000_000),
    maxUrlBytes: int(env, 'MAX_URL_BYTES', 8192, 256, 1_048_576),
    trustProxy: trustProxy(env),
  })
}
