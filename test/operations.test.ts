import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { buildApp } from '../src/app.js'
import { loggerOptions } from '../src/logger.js'
import { loadConfig } from '../src/config.js'
import { admin, build, createUser } from './helpers/build.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SPEC = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8'))

/** Polls `fn` until it returns a value other than undefined, or fails at the deadline. */
async function until<T> (what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await fn().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

t.test('health and readiness', async (t) => {
  const app = await build(t)
  const health = await app.inject({ url: '/healthz' })
  t.equal(health.statusCode, 200)
  t.match(health.headers['content-type'], /^application\/json/)
  t.same(health.json(), { status: 'ok' })
  const ready = await app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready' })
  t.equal((await app.inject({ url: '/healthz', headers: { authorization: 'Bearer nonsense' } })).statusCode, 200, 'no token needed, a bad one ignored')
})

t.test('the spec is served as JSON and YAML', async (t) => {
  const app = await build(t)
  const json = await app.inject({ url: '/openapi.json' })
  t.equal(json.statusCode, 200)
  t.match(json.headers['content-type'], /^application\/json/)
  const doc = json.json()
  t.equal(doc.openapi, '3.1.0')
  t.same(Object.keys(doc.paths).sort(), Object.keys(SPEC.paths).sort(), 'every path of openapi.yaml')
  t.ok(doc.paths['/api/v1/admin/users'].post, 'with its operations')
  t.same({ ...doc, servers: SPEC.servers }, SPEC, 'the document is openapi.yaml as written, but for its servers')
  t.same(doc.servers, [{ url: 'http://localhost:80', description: 'This server' }], 'which name this server, as the request reached it')

  const yaml = await app.inject({ url: '/openapi.yaml' })
  t.equal(yaml.statusCode, 200)
  t.match(yaml.headers['content-type'], /yaml/)
  t.notOk(yaml.body.trimStart().startsWith('{'), 'YAML, not JSON text')
  t.same(parse(yaml.body), doc, 'the YAML parses to the same document')
})

t.test('the spec names PUBLIC_URL as its server when set, else the host the request reached', async (t) => {
  const app = await build(t, { PUBLIC_URL: 'https://export.example.com' })
  const server = [{ url: 'https://export.example.com', description: 'This server' }]
  t.same((await app.inject({ url: '/openapi.json', headers: { host: 'internal:9999' } })).json().servers, server)
  t.same(parse((await app.inject({ url: '/openapi.yaml' })).body).servers, server)
  t.same((await app.inject({ url: '/docs/json' })).json().servers, server, 'and so does the one Swagger UI reads')

  const plain = await build(t)
  for (const url of ['/openapi.json', '/docs/json']) {
    const doc = (await plain.inject({ url, headers: { host: 'export.internal:8443' } })).json()
    t.same(doc.servers, [{ url: 'http://export.internal:8443', description: 'This server' }], `${url}: "Try it out" goes where the page came from`)
  }
})

t.test('/docs answers HTML', async (t) => {
  const app = await build(t)
  let res = await app.inject({ url: '/docs' })
  for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && hops < 3; hops++) {
    const location = String(res.headers.location)
    res = await app.inject({ url: new URL(location, 'http://localhost/docs').pathname })
  }
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/html/)
  t.match(res.body, /swagger/i, 'Swagger UI')
})

t.test('every response carries X-Request-Id; a valid incoming one is echoed', async (t) => {
  const app = await build(t)
  const u = await createUser(app, ['acme'])
  const responses = [
    await app.inject({ url: '/healthz' }),
    await app.inject({ url: '/nope' }),
    await app.inject({ url: '/api/v1/idm/acme/users/a' }),
    await app.inject({ url: '/api/v1/idm/acme/users/a', headers: u.headers }),
    await app.inject({ method: 'PUT', url: '/api/v1/admin/firms/acme', headers: admin }),
    await app.inject({ method: 'PUT', url: '/api/v1/idm/acme/users/a', headers: u.headers, payload: '{"id":' }),
  ]
  const ids = responses.map((r) => r.headers['x-request-id'])
  for (const id of ids) t.match(id, /^req-[0-9a-f-]{36}$/, 'a generated id')
  t.equal(new Set(ids).size, ids.length, 'each request its own id')

  const echoed = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'lb-1234.abc_X' } })
  t.equal(echoed.headers['x-request-id'], 'lb-1234.abc_X')
  const echoedError = await app.inject({ url: '/nope', headers: { 'x-request-id': 'lb-5678' } })
  t.equal(echoedError.headers['x-request-id'], 'lb-5678', 'on errors too')

  for (const bad of ['has space', 'x'.repeat(65), 'new\\nline', '<script>']) {
    const res = await app.inject({ url: '/healthz', headers: { 'x-request-id': bad } })
    t.match(res.headers['x-request-id'], /^req-[0-9a-f-]{36}$/, `an unsafe incoming id is replaced: ${bad}`)
  }
})

t.test('logs are JSON lines with request ids and no credentials', async (t) => {
  const lines: string[] = []
  const config = loadConfig({ DATA_DIR: t.testdir(), ADMIN_TOKEN: 'test-admin-token-0123456789', LOG_LEVEL: 'info' })
  const app = await buildApp(config, { logger: { ...(loggerOptions(config) as object), stream: { write: (line: string) => { lines.push(line) } } } })
  t.teardown(() => app.close())

  const res = await app.inject({
    url: '/api/v1/idm/acme/users/a?sig=abc&expires=1',
    headers: { authorization: 'Bearer secret-xyz', cookie: 'session=cookie-secret', 'x-request-id': 'log-test-1' },
  })
  t.equal(res.statusCode, 401)
  const admin = await app.inject({
    method: 'PUT',
    url: '/api/v1/admin/firms/acme?token=tok-secret',
    headers: { authorization: 'Bearer secret-xyz', 'x-request-id': 'log-test-2' },
  })
  t.equal(admin.statusCode, 401)
  const notFound = await app.inject({ url: '/nope?signature=sig-secret', headers: { 'x-request-id': 'log-test-3' } })
  t.equal(notFound.statusCode, 404)

  t.ok(lines.length >= 6, `requests were logged (${lines.length} lines)`)
  const entries = lines.map((line) => {
    t.ok(line.endsWith('\n'), 'one entry per line')
    return JSON.parse(line)
  })
  for (const id of ['log-test-1', 'log-test-2', 'log-test-3']) {
    t.ok(entries.some((e) => e.reqId === id && e.req?.url), `${id}: the incoming request is logged with its id`)
    t.ok(entries.some((e) => e.reqId === id && e.res?.statusCode), `${id}: and its completion`)
  }
  t.ok(entries.some((e) => e.req?.url === '/api/v1/idm/acme/users/a?sig=[REDACTED]&expires=1'), 'the URL is logged, its signature redacted')
  const all = lines.join('')
  for (const secret of ['secret-xyz', 'sig=abc', 'cookie-secret', 'tok-secret', 'sig-secret']) {
    t.notOk(all.includes(secret), `no ${secret} in the log`)
  }
})

t.test('SIGTERM closes the server gracefully', async (t) => {
  const dataDir = t.testdir()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', EXPORT_WORKERS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const killer = setTimeout(() => child.kill('SIGKILL'), 120_000)
  t.teardown(() => {
    clearTimeout(killer)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const exited = new Promise<{ code: number | null, signal: string | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))

  const base = await until('the listening log line', async () => {
    const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)
    if (m) return m[1]
    if (child.exitCode !== null) throw new Error(`server exited early: ${stderr}`)
    return undefined
  })
  const health = await until('/healthz', async () => {
    const res = await fetch(`${base}/healthz`)
    return res.status === 200 ? await res.json() : undefined
  })
  t.same(health, { status: 'ok' }, 'the server answers')

  child.kill('SIGTERM')
  const result = await Promise.race([
    exited,
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000).unref()),
  ])
  t.not(result, 'timeout', 'exits within the deadline')
  t.same(result, { code: 0, signal: null }, `exit code 0 (stderr: ${stderr})`)

  const entries = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line))
  t.ok(entries.some((e) => e.msg === 'stopped'), 'logs that it stopped')
  const errors = entries.filter((e) => e.level >= 50)
  t.same(errors, [], 'no error or fatal log line')
  t.equal(stderr, '', 'nothing on stderr')
  await t.rejects(fetch(`${base}/healthz`), 'the port is closed')
})
