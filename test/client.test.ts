import tap, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBulkExportClient } from '../src/client/index.js'
import { downloadVerified } from '../src/client/download.js'
import { DEFAULT_RETRY } from '../src/client/retry.js'
import { api, createUserOver, seedDataDir, startServer, until, within } from './helpers/child-server.js'
import { startFaultProxy, type Fault, type Seen } from './helpers/fault-proxy.js'

const FIRM = 'acme'
const TYPE = 'users'
const fast = { attempts: 8, baseMs: 20, maxMs: 200 }

/** A real server process with `count` objects in pages of `jobSize`, and a user's token. */
async function setup (t: Test, count = 2500, jobSize = 1000, env: Record<string, string> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'bes-client-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const seeded = await seedDataDir(dataDir, FIRM, TYPE, count, 200)
  const server = await startServer(t, dataDir, { EXPORT_JOB_SIZE: String(jobSize), ...env })
  const user = await createUserOver(server.base, FIRM)
  return { server, seeded, token: user.headers.authorization.slice('Bearer '.length), headers: user.headers }
}

/** Pulls everything through exportAll and hashes it as the NDJSON the collection is. */
async function pullAll (base: string, token: string, extra: { cursor?: string | null } = {}) {
  // Stalls are not the subject here: a download paused by a loaded machine is not retried.
  const client = createBulkExportClient({ baseUrl: base, token, retry: fast, stallMs: 60_000 })
  const hash = createHash('sha256')
  let count = 0
  let last = ''
  let ordered = true
  for await (const object of client.exportAll({ firmId: FIRM, objectType: TYPE, ...extra })) {
    hash.update(JSON.stringify(object)).update('\n')
    if (String(object.id) <= last) ordered = false
    last = String(object.id)
    count++
  }
  return { count, sha256: hash.digest('hex'), ordered }
}

const isDownload = (s: Seen): boolean => s.method === 'GET' && s.url.startsWith('/api/v1/files/')
const isStart = (s: Seen): boolean => s.method === 'POST' && s.url.endsWith('/export')

tap.test('exportAll pulls a multi-page collection exactly, pipelined, and can resume from a cursor', async (t) => {
  const { server, seeded, token, headers } = await setup(t)
  const proxy = await startFaultProxy(t, server.base, () => undefined)
  const all = await pullAll(proxy.base, token)
  t.same(all, { count: seeded.count, sha256: seeded.sha256, ordered: true }, 'every object once, in order, byte for byte')
  const starts = proxy.seen.filter(isStart)
  const downloads = proxy.seen.filter(isDownload)
  t.equal(starts.length, 3, 'three pages, three jobs')
  t.equal(downloads.length, 3)
  t.ok(starts[1].at < downloads[0].endedAt!, 'page 2 was started before page 1 had finished downloading')
  t.ok(proxy.seen.some((s) => s.headers.prefer === 'wait=30'), 'it long-polls')

  // From page 2's cursor: the rest of the collection.
  const list = (await api(server.base, 'GET', '/api/v1/requests?status=Completed&limit=100', { headers })).json()
  type Listed = { cursor: string | null, result: { nextCursor: string | null } }
  const first = (list.requests as Listed[]).find((r) => r.cursor === null)!
  const second = { cursor: first.result.nextCursor }
  const rest = await pullAll(proxy.base, token, { cursor: second.cursor })
  t.equal(rest.count, seeded.count - 1000, 'a saved cursor goes on from there')
})

tap.test('503, 429, a dropped connection and a cut download are retried or resumed', async (t) => {
  const { server, seeded, token } = await setup(t)
  const faults: Array<[string, (s: Seen, seen: Seen[]) => boolean, Fault]> = [
    ['429 on the first start', (s, seen) => isStart(s) && seen.filter(isStart).length === 1, { status: 429, retryAfter: '1' }],
    ['503 on a status read', (s, seen) => s.url.startsWith('/api/v1/request/') && seen.filter((x) => x.url.startsWith('/api/v1/request/')).length === 2, { status: 503 }],
    ['a dropped connection on a status read', (s, seen) => s.url.startsWith('/api/v1/request/') && seen.filter((x) => x.url.startsWith('/api/v1/request/')).length === 4, { drop: true }],
    ['a download cut after 50,000 bytes', (s, seen) => isDownload(s) && seen.filter(isDownload).length === 1, { cutAfter: 50_000 }],
    ['a 503 on a download', (s, seen) => isDownload(s) && seen.filter(isDownload).length === 3, { status: 503 }],
  ]
  const hit = new Set<string>()
  const proxy = await startFaultProxy(t, server.base, (req, seen) => {
    const s = seen[seen.length - 1]
    for (const [name, when, fault] of faults) {
      if (when(s, seen)) {
        hit.add(name)
        return fault
      }
    }
    return undefined
  })
  const all = await pullAll(proxy.base, token)
  t.same(all, { count: seeded.count, sha256: seeded.sha256, ordered: true }, 'the pull is still exact')
  t.same([...hit].sort(), faults.map(([name]) => name).sort(), 'every fault was met')
  const resumed = proxy.seen.filter(isDownload).find((s) => s.headers.range !== undefined)
  t.match(resumed?.headers.range, /^bytes=\d+-$/, 'the cut download resumed with Range')
  t.ok(Number(/\d+/.exec(resumed!.headers.range as string)![0]) > 0, 'from where it was cut')
})

tap.test('a 409 attaches to the active job of the same page, and waits out one of another', async (t) => {
  // Page 1's job is held running until the client's start has met it (a 409).
  const holdDir = mkdtempSync(join(tmpdir(), 'bes-hold-'))
  t.teardown(() => rmSync(holdDir, { recursive: true, force: true }))
  const hold = join(holdDir, 'hold')
  writeFileSync(hold, '')
  const { server, seeded, token, headers } = await setup(t, 1500, 1000, { HOLD_EXPORTS_FILE: hold })
  // The same user already started page 1 (a crashed run of the same sync, say).
  const started = await api(server.base, 'POST', `/api/v1/idm/${FIRM}/${TYPE}/export`, { headers })
  t.equal(started.status, 200)
  const proxy = await startFaultProxy(t, server.base, () => undefined)
  const seenStart = until('the client\'s first start', () => proxy.seen.some(isStart) || undefined)
  const pulled = pullAll(proxy.base, token)
  await seenStart
  t.equal((await api(server.base, 'GET', `/api/v1/request/${started.json().requestId}`, { headers })).json().status, 'InProgress', 'page 1 was still running when the client started it')
  rmSync(hold)
  const all = await pulled
  t.equal(all.sha256, seeded.sha256)
  const firstStart = proxy.seen.find(isStart)
  t.ok(firstStart, 'the client tried to start page 1')
  const list = (await api(server.base, 'GET', '/api/v1/requests?limit=100', { headers })).json()
  t.equal(list.requests.filter((r: { cursor: string | null }) => r.cursor === null).length, 1, 'and attached to the running job: page 1 was exported once')

  // An active job of another collection holds the slot: the client waits, then goes on.
  const other = await api(server.base, 'POST', `/api/v1/idm/${FIRM}/groups/export`, { headers })
  t.equal(other.status, 200)
  const again = await pullAll(proxy.base, token)
  t.equal(again.sha256, seeded.sha256, 'it waited for the other export, then pulled')
})

tap.test('a file that expired before it was downloaded is exported again', async (t) => {
  const { server, seeded, token, headers } = await setup(t, 1500, 1000)
  let deleted = false
  const proxy = await startFaultProxy(t, server.base, (req) => {
    if (deleted || !req.url?.startsWith('/api/v1/files/')) return undefined
    deleted = true
    const requestId = /files\/([^?]+)/.exec(req.url)![1]
    // The file goes away (as retention would) just before its download.
    return { before: async () => { await api(server.base, 'DELETE', `/api/v1/request/${requestId}`, { headers }) } }
  })
  const all = await pullAll(proxy.base, token)
  t.same(all, { count: seeded.count, sha256: seeded.sha256, ordered: true })
  t.ok(deleted)
  const gone = proxy.seen.filter(isDownload)
  t.ok(gone.length >= 3, `page 1 was downloaded again after it was exported again (${gone.length} downloads)`)
  const list = (await api(server.base, 'GET', '/api/v1/requests?limit=100', { headers })).json()
  t.equal(list.requests.filter((r: { cursor: string | null }) => r.cursor === null).length, 2, 'page 1 was exported twice')
})

tap.test('a permanent error is not retried: it says what is wrong', async (t) => {
  const { server, token } = await setup(t, 10, 1000)
  const first = (client: ReturnType<typeof createBulkExportClient>, opts: Parameters<ReturnType<typeof createBulkExportClient>['exportAll']>[0]) =>
    client.exportAll(opts).next()
  const stranger = createBulkExportClient({ baseUrl: server.base, token: 'bes_nope', retry: fast })
  await t.rejects(first(stranger, { firmId: FIRM, objectType: TYPE }), { status: 401, code: 'UNAUTHENTICATED' })
  const client = createBulkExportClient({ baseUrl: server.base, token, retry: fast })
  await t.rejects(first(client, { firmId: 'globex', objectType: TYPE }), { status: 403, code: 'FORBIDDEN' })
  await t.rejects(first(client, { firmId: FIRM, objectType: TYPE, cursor: 'c2.bad.cursor' }), { status: 400, code: 'INVALID_CURSOR' })
})

tap.test('a page exported again after the collection changed: the chain goes on from where it now ends', async (t) => {
  const { server, seeded, token, headers } = await setup(t, 1500, 1000)
  let done = false
  const proxy = await startFaultProxy(t, server.base, (req) => {
    if (done || !req.url?.startsWith('/api/v1/files/')) return undefined
    done = true
    const requestId = /files\/([^?]+)/.exec(req.url)![1]
    return {
      before: async () => {
        // Page 1's file goes, and an object lands inside page 1's range, before its download.
        await api(server.base, 'DELETE', `/api/v1/request/${requestId}`, { headers })
        await api(server.base, 'PUT', `/api/v1/idm/${FIRM}/${TYPE}/obj-0000500a`, { headers, body: { id: 'obj-0000500a' } })
      },
    }
  })
  const client = createBulkExportClient({ baseUrl: proxy.base, token, retry: fast })
  const ids: string[] = []
  for await (const o of client.exportAll({ firmId: FIRM, objectType: TYPE })) ids.push(String(o.id))
  t.equal(ids.length, seeded.count + 1, 'every object, the new one included')
  t.equal(new Set(ids).size, ids.length, 'none twice')
  t.same(ids, [...ids].sort(), 'in order')
  t.ok(ids.includes('obj-0000999'), 'the object pushed past the old cursor is there')
})

tap.test('stalls, corrupt bytes and a retryable job failure are retried; a refused link and a corrupt file that stays corrupt are errors', async (t) => {
  const { server, seeded, token } = await setup(t, 1500, 1000)
  let downloads = 0
  let failedOnce = false
  const proxy = await startFaultProxy(t, server.base, (req) => {
    if (req.url?.startsWith('/api/v1/files/')) {
      downloads++
      if (downloads === 1) return { delayMs: 1500 } // longer than the stall timeout
      if (downloads === 2) return { corruptAt: 100 }
      return undefined
    }
    if (!failedOnce && req.method === 'GET' && req.url?.startsWith('/api/v1/request/')) {
      return {
        rewriteJson: (body: { status: string, error?: unknown, result?: unknown }) => {
          if (body.status !== 'Completed' || failedOnce) return body
          failedOnce = true
          return { ...body, status: 'Failed', result: undefined, error: { code: 'EXPORT_WRITE_FAILED', message: 'disk full (injected)', retryable: true } }
        },
      }
    }
    return undefined
  })
  const client = createBulkExportClient({ baseUrl: proxy.base, token, retry: fast, stallMs: 500 })
  const hash = createHash('sha256')
  for await (const o of client.exportAll({ firmId: FIRM, objectType: TYPE })) hash.update(JSON.stringify(o)).update('\n')
  t.equal(hash.digest('hex'), seeded.sha256, 'still exact')
  t.ok(failedOnce, 'a job read as failed (retryable) was started again')
  t.ok(downloads >= 4, `the stalled and the corrupt downloads were fetched again (${downloads} downloads)`)

  const corrupt = await startFaultProxy(t, server.base, (req) => req.url?.startsWith('/api/v1/files/') ? { corruptAt: 10 } : undefined)
  const c2 = createBulkExportClient({ baseUrl: corrupt.base, token, retry: fast })
  await t.rejects(c2.exportAll({ firmId: FIRM, objectType: TYPE }).next(), /does not match its request's result/, 'a file that never matches is given up')
  const refusing = await startFaultProxy(t, server.base, (req) => req.url?.startsWith('/api/v1/files/') ? { status: 403 } : undefined)
  const t0 = Date.now()
  const c3 = createBulkExportClient({ baseUrl: refusing.base, token, retry: fast })
  await t.rejects(c3.exportAll({ firmId: FIRM, objectType: TYPE }).next(), /download link .* is refused/)
  t.ok(refusing.seen.filter((s) => s.url.startsWith('/api/v1/files/')).length <= 5, 'after a few tries, not in a loop')
  t.ok(Date.now() - t0 < 20_000)
})

tap.test('Retry-After of a 429 is waited out', async (t) => {
  const { server, token } = await setup(t, 10, 1000)
  let first = true
  const proxy = await startFaultProxy(t, server.base, (req) => {
    if (first && req.method === 'POST') {
      first = false
      return { status: 429, retryAfter: '1' }
    }
    return undefined
  })
  const client = createBulkExportClient({ baseUrl: proxy.base, token, retry: fast })
  let n = 0
  for await (const object of client.exportAll({ firmId: FIRM, objectType: TYPE })) n += object.id ? 1 : 0
  t.equal(n, 10)
  const [refused, accepted] = proxy.seen.filter(isStart)
  t.ok(accepted.at - refused.at >= 1000, `the start was sent again ${accepted.at - refused.at} ms later, not sooner than Retry-After: 1`)
})

tap.test('breaking out of exportAll early returns at once and cancels the page started ahead', async (t) => {
  // Five pages; every download but the first is held by the proxy and never let through.
  const { server, token, headers } = await setup(t, 1000, 200)
  const proxy = await startFaultProxy(t, server.base, (req, seen) =>
    req.url?.startsWith('/api/v1/files/') && seen.filter(isDownload).length > 1 ? { hold: new Promise(() => {}) } : undefined)
  const client = createBulkExportClient({ baseUrl: proxy.base, token, retry: fast })
  const read = async (): Promise<number> => {
    let n = 0
    for await (const object of client.exportAll({ firmId: FIRM, objectType: TYPE })) {
      if (object.id && ++n === 10) {
        // Break while the page read ahead is being downloaded (the proxy holds it).
        await until('the download of page 2 to begin', () => proxy.seen.filter(isDownload).length >= 2 || undefined)
        break
      }
    }
    return n
  }
  // The held download never ends: a client that waited for it would never return.
  t.equal(await within('exportAll to return after the break', 60_000, read()), 10, 'it returned after the break, without waiting for the download of the page read ahead')
  const jobs = (await api(server.base, 'GET', '/api/v1/requests?limit=100', { headers })).json().requests
  // Page 1 was read, page 2 downloaded ahead, page 3 exported while page 2 downloads; no more.
  t.equal(jobs.length, 3, `no page beyond the one exported ahead was started (${jobs.length} jobs)`)
  const active = await until('the job started ahead to end', async () => {
    const left = (await api(server.base, 'GET', '/api/v1/requests?status=Pending&status=InProgress', { headers })).json().requests
    return left.length === 0 ? left : undefined
  })
  t.same(active, [], 'no job is left running for it')
})

tap.test('a download asked for with a signal that is already aborted fetches nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bes-client-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const calls: string[] = []
  const recording: typeof fetch = async (input) => {
    calls.push(String(input))
    return new Response('')
  }
  const stop = new AbortController()
  stop.abort(new Error('stopped'))
  await t.rejects(downloadVerified('http://127.0.0.1:9/f', join(dir, 'p.ndjson'), { bytes: 1, sha256: 'x', total: 1 },
    { policy: { ...DEFAULT_RETRY, ...fast }, stallMs: 1000, fetch: recording, signal: stop.signal }), /stopped/)
  t.same(calls, [], 'no request was sent')
})
