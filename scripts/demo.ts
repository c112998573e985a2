/**
 * `npm run demo`: seeds a demo firm (~250,000 identity objects) into the embedded SQLite
 * database, starts the production server (dist/server.js) on it, and prints a token and
 * ready-to-paste curl commands. Seeding happens once; later runs reuse the data.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../src/config.js'
import { createAdminService } from '../src/services/admin.js'
import type { ObjectsStore } from '../src/store/objects-store.js'
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { EXPORT_ALL } from './lib/demo-commands.js'
import { makeGroup, makeUser, objectBatches, prng } from './lib/demo-data.js'
import { SERVER_ENV, SERVER_NODE_FLAGS, waitReady } from './lib/server-process.js'

const FIRM = 'demo'
const USERS = 250_000
const GROUPS = 2_000
const BATCH = 10_000

const adminToken = process.env.ADMIN_TOKEN ?? `demo-admin-${randomBytes(16).toString('hex')}`
const config = loadConfig({ ...process.env, ADMIN_TOKEN: adminToken })
const store = openSqliteStore(config.dataDir)
const admin = createAdminService(store)

await admin.putFirm(FIRM, 'Demo Corporation')
async function seed (objects: ObjectsStore, type: string, count: number, make: (rand: () => number, n: number) => Record<string, unknown>, seedNo: number): Promise<void> {
  if (await objects.countObjects(FIRM, type) >= count) return
  const started = Date.now()
  let done = 0
  for (const rows of objectBatches(make, seedNo, count, BATCH)) {
    await objects.upsertObjects(FIRM, type, rows, Date.now())
    done += rows.length
    if (process.stdout.isTTY) process.stdout.write(`\rseeding ${type}: ${done.toLocaleString('en-US')} / ${count.toLocaleString('en-US')}`)
  }
  process.stdout.write(`${process.stdout.isTTY ? '\r' : ''}seeded ${count.toLocaleString('en-US')} ${type} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
}
await seed(store.objects, 'users', USERS, makeUser, 1)
await seed(store.objects, 'groups', GROUPS, makeGroup, 2)

// One demo user, kept across runs; each run issues it a fresh token (tokens are shown once).
const stateFile = join(config.dataDir, 'demo-user.json')
let userId: string | undefined = existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')).userId : undefined
let token: string
try {
  if (!userId) throw new Error('no demo user yet')
  token = (await admin.issueToken(userId)).token
} catch {
  const created = await admin.createUser('Demo integrator', [FIRM])
  userId = created.userId
  token = created.token
  writeFileSync(stateFile, JSON.stringify({ userId }))
}
await store.close()

// The seed is deterministic: the first group generated is always the same one.
const firstGroupId = makeGroup(prng(2), 0).id as string
const base = config.publicUrl ?? `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`
const server = spawn(process.execPath, [...SERVER_NODE_FLAGS, 'dist/server.js'], {
  env: { ...process.env, ...SERVER_ENV, ADMIN_TOKEN: adminToken, DATA_DIR: config.dataDir, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
  stdio: 'inherit',
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.kill(signal))
server.on('exit', (code) => process.exit(code ?? 0))

await waitReady(new URL(`${base}/readyz`), 10_000)

const auth = '-H "Authorization: Bearer $TOKEN"'
const indent = (text: string): string => text.split('\n').map((line) => `  ${line}`).join('\n')
console.log(`
Bulk export server demo is running at ${base}  (Ctrl-C stops it)
  firm '${FIRM}': ${USERS.toLocaleString('en-US')} users, ${GROUPS.toLocaleString('en-US')} groups
  API docs: ${base}/docs

Paste into a shell (bash, with curl and node):

  export TOKEN=${token}
  export ADMIN_TOKEN=${adminToken}
  export BASE=${base}

  # what the firm holds
  curl -s ${auth} $BASE/api/v1/idm/${FIRM}/collections; echo

  # export every page of the users (at most ${config.exportJobSize.toLocaleString('en-US')} per file) as page-N.ndjson:
  # start, wait (long-poll), stop on Failed, download, check sha256, follow nextCursor
${indent(EXPORT_ALL)}
  export_all ${FIRM} users

  # your requests, newest first (a crashed client finds its job here)
  curl -s ${auth} "$BASE/api/v1/requests?limit=3"; echo

  # one object, an import, and the admin API
  curl -s ${auth} $BASE/api/v1/idm/${FIRM}/groups/${firstGroupId}; echo
  printf '{"id":"u-1","userName":"ada@example.com"}\\n{"id":"u-2","userName":"grace@example.com"}\\n' | curl -s ${auth} -H 'Content-Type: application/x-ndjson' --data-binary @- $BASE/api/v1/idm/${FIRM}/contractors/import; echo
  curl -s -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" $BASE/api/v1/admin/firms/another-firm; echo
`)
