import t from 'tap'
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, loadConfig } from '../src/config.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

t.test('defaults', async (t) => {
  const config = loadConfig({})
  t.equal(config.port, 3000)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.dataDir, resolve('./data'), 'DATA_DIR defaults to ./data, made absolute')
  t.equal(config.adminToken, undefined, 'no admin token unless given')
  t.equal(config.exportJobSize, 100_000)
  t.ok(Number.isInteger(config.exportWorkers) && config.exportWorkers >= 1, `EXPORT_WORKERS ${config.exportWorkers} >= 1`)
  t.equal(config.publicUrl, undefined)
  t.equal(config.fileTtlSeconds, 86_400)
  t.equal(config.logLevel, 'info')
  t.equal(config.importMaxBytes, 1024 ** 3, 'IMPORT_MAX_BYTES 1 GiB')
  t.equal(config.objectMaxBytes, 1024 ** 2, 'OBJECT_MAX_BYTES 1 MiB')
  t.equal(config.signingSecret, undefined)
  t.ok(Object.isFrozen(config), 'the config is frozen')
  t.same(loadConfig({ PORT: '', HOST: '', LOG_LEVEL: '' }), config, 'empty values mean the default')
})

t.test('values are read from the environment', async (t) => {
  const config = loadConfig({
    PORT: '8080',
    HOST: '0.0.0.0',
    DATA_DIR: '/tmp/bes-data',
    ADMIN_TOKEN: 'admin-secret',
    EXPORT_JOB_SIZE: '500',
    EXPORT_WORKERS: '3',
    PUBLIC_URL: 'https://export.example.com/base/',
    FILE_TTL_SECONDS: '60',
    LOG_LEVEL: 'debug',
    IMPORT_MAX_BYTES: '2048',
    OBJECT_MAX_BYTES: '4096',
    SIGNING_SECRET: 's'.repeat(32),
    SHUTDOWN_GRACE_SECONDS: '3',
    RATE_LIMIT_POLLS_PER_MINUTE: '120',
    RATE_LIMIT_STARTS_PER_MINUTE: '5',
    MAX_URL_BYTES: '4096',
    TRUST_PROXY: '10.0.0.0/8, 192.168.1.1',
  })
  t.same({ ...config }, {
    port: 8080,
    host: '0.0.0.0',
    dataDir: '/tmp/bes-data',
    adminToken: 'admin-secret',
    exportJobSize: 500,
    exportWorkers: 3,
    publicUrl: 'https://export.example.com/base',
    fileTtlSeconds: 60,
    logLevel: 'debug',
    importMaxBytes: 2048,
    objectMaxBytes: 4096,
    signingSecret: 's'.repeat(32),
    shutdownGraceSeconds: 3,
    rateLimitPollsPerMinute: 120,
    rateLimitStartsPerMinute: 5,
    maxUrlBytes: 4096,
    trustProxy: '10.0.0.0/8,192.168.1.1',
  })
  t.equal(loadConfig({ PORT: '0' }).port, 0, 'PORT=0 picks a free port')
  t.equal(loadConfig({}).trustProxy, false, 'no proxy is trusted by default')
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true)
  t.equal(loadConfig({ PORT: '65535' }).port, 65535)
})

t.test('each bad value throws a ConfigError naming the variable', async (t) => {
  const bad: Array<[string, string]> = [
    ['PORT', 'abc'],
    ['SHUTDOWN_GRACE_SECONDS', 'soon'],
    ['RATE_LIMIT_POLLS_PER_MINUTE', '0'],
    ['RATE_LIMIT_STARTS_PER_MINUTE', '-5'],
    ['MAX_URL_BYTES', '10'],
    ['TRUST_PROXY', 'the load balancer'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['PORT', '1e3'],
    ['EXPORT_JOB_SIZE', '0'],
    ['EXPORT_JOB_SIZE', 'many'],
    ['EXPORT_WORKERS', '0'],
    ['EXPORT_WORKERS', 'two'],
    ['FILE_TTL_SECONDS', '0'],
    ['FILE_TTL_SECONDS', '1h'],
    ['IMPORT_MAX_BYTES', '0'],
    ['IMPORT_MAX_BYTES', '1GB'],
    ['OBJECT_MAX_BYTES', '1'],
    ['OBJECT_MAX_BYTES', 'big'],
    ['PUBLIC_URL', 'not a url'],
    ['PUBLIC_URL', 'export.example.com'],
    ['PUBLIC_URL', 'ftp://export.example.com'],
    ['PUBLIC_URL', 'https://export.example.com/?a=1'],
    ['LOG_LEVEL', 'loud'],
    ['LOG_LEVEL', 'INFO'],
    ['HOST', 'local host'],
  ]
  for (const [name, value] of bad) {
    let error: unknown
    try {
      loadConfig({ [name]: value })
    } catch (err) {
      error = err
    }
    t.ok(error instanceof ConfigError, `${name}=${value} throws a ConfigError`)
    if (!(error instanceof ConfigError)) continue
    t.equal(error.variable, name)
    t.match(error.message, `${name}=`, `${name}=${value}: the message names the variable`)
    t.match(error.message, /: (must|.*must)/, `${name}=${value}: the message says why (${error.message})`)
  }
})

t.test('a short SIGNING_SECRET is refused without printing it', async (t) => {
  const secret = 'short-but-secret'
  t.throws(() => loadConfig({ SIGNING_SECRET: secret }), ConfigError)
  try {
    loadConfig({ SIGNING_SECRET: secret })
  } catch (err) {
    t.match((err as Error).message, 'SIGNING_SECRET')
    t.notMatch((err as Error).message, secret, 'the secret is not in the message')
  }
})

t.test('the server refuses to start on a bad value with a clear message', async (t) => {
  const dataDir = t.testdir()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: 'abc', DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  clearTimeout(timer)

  t.not(code, 0, 'exits non-zero')
  t.not(code, null, 'exits by itself, not killed')
  t.match(stderr, /PORT/, 'stderr names PORT')
  t.match(stderr, /"abc"/, 'and the value')
  t.match(stderr, /must be a whole number from 0 to 65535/, 'and why')
  t.notMatch(stdout + stderr, /\n\s+at \S/, 'no stack trace')
  t.notMatch(stdout + stderr, /ConfigError|Error:/, 'no error dump')
  t.ok(stderr.trim().split('\n').length <= 2, `a short message: ${stderr}`)
})
