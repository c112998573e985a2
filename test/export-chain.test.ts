import tap from 'tap'
import { createHash } from 'node:crypto'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { createUser, filesDirOf, importLines, sqliteOf } from './helpers/build.js'
import { buildExportApp, exportChain, exportPage, ndjsonLines, postExport, randomId, waitForJob, liveResult } from './helpers/exports.js'

const REQUEST_ID = /^export-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const JOB_SIZE = 7
const TTL_SECONDS = 600

function sha256 (bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * `n` objects with random UUID ids (so insertion order is not key order), written with
 * the kinds of JSON text that must survive byte for byte: escapes, unicode, odd spacing.
 */
function objectLines (n: number): Map<string, string> {
  const lines = new Map<string, string>()
  for (let i = 0; i < n; i++) {
    const id = randomId()
    const variants = [
      `{"id":"${id}","n":${i}}`,
      `{"id":"${id}","name":"Zoë \\u00e9 日本語 😀 \\ud83d\\ude00","quote":"a \\"b\\" \\\\ c\\n\\t"}`,
      `{ "id" : "${id}" , "nested" : { "a" : [1, 2.50, -0, 1e3, null, true, false] } , "empty" : {} }`,
      `{"id":"${id}","slash":"\\/x","ctl":"\\u0001\\u001f","big":12345678901234567890}`,
    ]
    lines.set(id, variants[i % variants.length])
  }
  return lines
}

/** The file the export of `ids` (already in key order) must be: each imported line plus '\n'. */
function expectedFile (lines: Map<string, string>, ids: string[]): Buffer {
  return Buffer.from(ids.map((id) => lines.get(id) + '\n').join(''), 'utf8')
}

async function setup (t: Parameters<typeof buildExportApp>[0], env: Record<string, string> = {}) {
  const app = await buildExportApp(t, { EXPORT_JOB_SIZE: String(JOB_SIZE), FILE_TTL_SECONDS: String(TTL_SECONDS), ...env })
  const u = await createUser(app, ['acme'])
  return { app, u }
}

// Most tests share one app (each on its own object type): the first job of an app waits
// for a worker thread to start, which dominates a small test's time.
let sharedApp: ReturnType<typeof setup> | undefined
function shared (): ReturnType<typeof setup> {
  sharedApp ??= setup(tap)
  return sharedApp
}

async function importObjects (t: Pick<typeof tap, 'equal'>, app: FastifyInstance, headers: Record<string, string>, type: string, lines: Map<string, string>) {
  const res = await importLines(app, headers, 'acme', type, [...lines.values()])
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().imported, lines.size, `imported ${lines.size} into ${type}`)
}

tap.test(`chains over N objects (job size ${JOB_SIZE}) yield every id once, in key order`, async (parent) => {
  const { app, u } = await shared()
  for (const n of [52, JOB_SIZE, 3 * JOB_SIZE]) {
    await parent.test(`N = ${n}`, async (t) => {
      const type = `users${n}`
      const lines = objectLines(n)
      await importObjects(t, app, u.headers, type, lines)
      const sorted = [...lines.keys()].sort()

      const before = Date.now()
      const pages = await exportChain(app, u.headers, 'acme', type)
      const after = Date.now()

      t.equal(pages.length, Math.ceil(n / JOB_SIZE), 'as many pages as the job size needs, no empty last page')
      const seen: string[] = []
      pages.forEach((page, i) => {
        const last = i === pages.length - 1
        const { result, file } = page
        const pageLines = ndjsonLines(file)
        const ids = pageLines.map((l) => JSON.parse(l).id as string)
        t.ok(result.total > 0, `page ${i} is not empty`)
        t.ok(result.total <= JOB_SIZE, `page ${i} holds at most the job size`)
        t.equal(pageLines.length, result.total, `page ${i}: total is the number of lines`)
        t.equal(page.status.progress.processed, result.total, `page ${i}: processed reached total`)
        if (last) t.equal(result.nextCursor, null, 'the last page has no nextCursor')
        else t.type(result.nextCursor, 'string', `page ${i} is followed by a cursor`)
        t.same(file, expectedFile(lines, ids), `page ${i}: each line is the imported JSON bytes, '\\n'-terminated`)
        t.equal(file[file.length - 1], 0x0a, `page ${i} ends with a newline`)
        t.equal(result.bytes, file.length, `page ${i}: bytes is the file length`)
        t.equal(result.sha256, sha256(file), `page ${i}: sha256 is the file's`)
        const expiresAt = Date.parse(result.expiresAt)
        t.ok(expiresAt >= before + TTL_SECONDS * 1000 && expiresAt <= after + TTL_SECONDS * 1000,
          `page ${i}: expiresAt ${result.expiresAt} is FILE_TTL_SECONDS after completion`)
        seen.push(...ids)
      })
      t.same(seen, sorted, 'every id exactly once, in ascending key order')
      t.equal(pages.reduce((sum, p) => sum + p.result.total, 0), n, 'totals add up to N')
    })
  }
})

tap.test('objects added and removed during a chain: those there throughout come exactly once', async (t) => {
  const { app, u } = await shared()
  const type = 'changing'
  const lines = objectLines(30)
  await importObjects(t, app, u.headers, type, lines)
  const sorted = [...lines.keys()].sort()

  const first = await exportPage(app, u.headers, 'acme', type)
  const exported = ndjsonLines(first.file).map((l) => JSON.parse(l).id as string)
  t.same(exported, sorted.slice(0, JOB_SIZE))

  // Between pages: delete two objects not yet exported and one already exported; add ten.
  const removed = [sorted[JOB_SIZE + 1], sorted[20], sorted[0]]
  for (const id of removed) {
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/idm/acme/${type}/${id}`, headers: u.headers })
    t.equal(res.statusCode, 204, `deleted ${id}`)
  }
  await importObjects(t, app, u.headers, type, objectLines(10))

  let cursor = first.result.nextCursor
  while (cursor !== null) {
    const page = await exportPage(app, u.headers, 'acme', type, cursor)
    t.ok(page.result.total > 0, 'no empty page')
    exported.push(...ndjsonLines(page.file).map((l) => JSON.parse(l).id as string))
    cursor = page.result.nextCursor
  }
  t.equal(new Set(exported).size, exported.length, 'no id twice')
  t.same(exported, [...exported].sort(), 'in key order')
  for (const id of sorted.filter((x) => !removed.includes(x))) {
    if (!exported.includes(id)) t.fail(`${id} was there throughout but not exported`)
  }
  t.notOk(exported.includes(removed[0]) || exported.includes(removed[1]), 'objects deleted before their page are not exported')
})

tap.test('a job that cannot write its file fails with an actionable error and frees the slot', async (t) => {
  const { app, u } = await setup(t)
  await importObjects(t, app, u.headers, 'users', objectLines(3))
  await app.ready()
  // The disk error at the edge: the files directory is replaced by a plain file.
  rmSync(filesDirOf(app), { recursive: true, force: true })
  writeFileSync(filesDirOf(app), '')
  const res = await postExport(app, u.headers, 'acme', 'users')
  t.equal(res.statusCode, 200)
  const status = await waitForJob(app, u.headers, res.json().requestId)
  t.equal(status.status, 'Failed')
  t.notOk('result' in status, 'no result')
  t.equal(status.error?.code, 'EXPORT_WRITE_FAILED')
  t.match(status.error?.message, /DATA_DIR|disk|write/i, `a message a person can act on: ${status.error?.message}`)
  t.notMatch(status.error?.message, /\n\s+at /, 'no stack trace')

  rmSync(filesDirOf(app), { force: true })
  mkdirSync(filesDirOf(app))
  const again = await exportPage(app, u.headers, 'acme', 'users')
  t.equal(again.result.total, 3, 'the slot was freed: the next export completes')
})

tap.test('an empty collection exports an empty file with no next cursor', async (t) => {
  const { app, u } = await shared()
  const page = await exportPage(app, u.headers, 'acme', 'nothingHere')
  t.equal(page.status.status, 'Completed')
  t.equal(page.result.total, 0)
  t.equal(page.result.nextCursor, null)
  t.equal(page.result.bytes, 0)
  t.equal(page.result.sha256, sha256(Buffer.alloc(0)))
  t.equal(page.file.length, 0, 'the file is empty')
  t.equal(page.status.progress.processed, 0)
})

tap.test('re-using a cursor re-exports the same page', async (t) => {
  const { app, u } = await shared()
  const type = 'reused'
  const lines = objectLines(20)
  await importObjects(t, app, u.headers, type, lines)
  const sorted = [...lines.keys()].sort()

  const first = await exportPage(app, u.headers, 'acme', type)
  const cursor = first.result.nextCursor
  t.type(cursor, 'string')
  const second = await exportPage(app, u.headers, 'acme', type, cursor)
  const again = await exportPage(app, u.headers, 'acme', type, cursor)
  t.not(again.requestId, second.requestId, 'a new request')
  t.same(again.file, second.file, 'the same bytes')
  t.same(ndjsonLines(again.file).map((l) => JSON.parse(l).id), sorted.slice(JOB_SIZE, 2 * JOB_SIZE), 'the same ids: the second page')
  t.equal(again.result.nextCursor, second.result.nextCursor, 'and the same next cursor')
})

tap.test('no body, {} and {"cursor": null} all start from the beginning', async (t) => {
  const { app, u } = await shared()
  const type = 'fromStart'
  const lines = objectLines(10)
  await importObjects(t, app, u.headers, type, lines)
  const firstPage = expectedFile(lines, [...lines.keys()].sort().slice(0, JOB_SIZE))

  const bodies: Array<[string, InjectOptions]> = [
    ['no body', { method: 'POST', url: '/api/v1/idm/acme/fromStart/export', headers: u.headers }],
    ['an empty JSON body', { method: 'POST', url: '/api/v1/idm/acme/fromStart/export', headers: { ...u.headers, 'content-type': 'application/json' }, payload: '' }],
    ['{}', { method: 'POST', url: '/api/v1/idm/acme/fromStart/export', headers: u.headers, payload: {} }],
    ['{"cursor":null}', { method: 'POST', url: '/api/v1/idm/acme/fromStart/export', headers: u.headers, payload: { cursor: null } }],
  ]
  for (const [why, request] of bodies) {
    const res = await app.inject(request)
    t.equal(res.statusCode, 200, `${why}: ${res.body}`)
    const status = await waitForJob(app, u.headers, res.json().requestId)
    t.equal(status.status, 'Completed', why)
    const url = new URL(liveResult(status).fileUrl)
    const file = await app.inject({ url: url.pathname + url.search })
    t.same(file.rawPayload, firstPage, `${why}: the first page`)
    t.type(status.result!.nextCursor, 'string', `${why}: more follow`)
  }
})

tap.test('an unknown body property is a 400, not an export from the start', async (t) => {
  const { app, u } = await shared()
  const count = () => (sqliteOf(app).prepare('SELECT count(*) AS n FROM export_jobs').get() as { n: number }).n
  const before = count()
  for (const payload of [{ next_cursor: 'x' }, { cursor: null, extra: 1 }]) {
    const res = await postExport(app, u.headers, 'acme', 'users', payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'VALIDATION_FAILED')
  }
  const wrongType = await postExport(app, u.headers, 'acme', 'users', { cursor: 42 })
  t.equal(wrongType.statusCode, 400, 'a number is not a cursor')
  t.equal(wrongType.json().code, 'VALIDATION_FAILED')
  t.equal(count(), before, 'nothing was queued')
})

tap.test('POST answers a request id and a Location at once', async (t) => {
  const { app, u } = await shared()
  const res = await postExport(app, u.headers, 'acme', 'users')
  t.equal(res.statusCode, 200, res.body)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json()
  t.same(Object.keys(body), ['requestId'])
  t.match(body.requestId, REQUEST_ID)
  const location = String(res.headers.location)
  t.ok(location.endsWith(`/api/v1/request/${body.requestId}`), `Location ${location} points at the status`)
  const status = await app.inject({ url: new URL(location, 'http://localhost').pathname, headers: u.headers })
  t.equal(status.statusCode, 200, 'and the Location answers')
  t.equal(status.json().requestId, body.requestId)
  await waitForJob(app, u.headers, body.requestId)
})

tap.test('with PUBLIC_URL, links start with it', async (t) => {
  const { app, u } = await setup(t, { PUBLIC_URL: 'https://export.example.com/' })
  const lines = objectLines(3)
  await importObjects(t, app, u.headers, 'users', lines)
  const res = await postExport(app, u.headers, 'acme', 'users')
  t.equal(res.statusCode, 200)
  const id = res.json().requestId
  t.equal(res.headers.location, `https://export.example.com/api/v1/request/${id}`)
  const status = await waitForJob(app, u.headers, id)
  const { fileUrl } = liveResult(status)
  t.ok(fileUrl.startsWith(`https://export.example.com/api/v1/files/${id}?`), fileUrl)
  const url = new URL(fileUrl)
  const file = await app.inject({ url: url.pathname + url.search })
  t.equal(file.statusCode, 200, 'the link works on this server')
  t.same(file.rawPayload, expectedFile(lines, [...lines.keys()].sort()))
})

tap.test('at the default job size, 100,001 objects make a full page and a page of one', async (t) => {
  const app = await buildExportApp(t)
  t.equal(app.config.exportJobSize, 100_000, 'the default EXPORT_JOB_SIZE')
  const u = await createUser(app, ['acme'])
  const ids = Array.from({ length: 100_001 }, () => randomId())
  const rows = ids.map((id, i) => ({ id, doc: Buffer.from(JSON.stringify({ id, i })) }))
  await app.store.objects.upsertObjects('acme', 'users', rows, Date.now())
  const sorted = [...ids].sort()

  const first = await exportPage(app, u.headers, 'acme', 'users')
  t.equal(first.result.total, 100_000)
  t.type(first.result.nextCursor, 'string', 'one more object follows')
  const firstIds = ndjsonLines(first.file).map((l) => JSON.parse(l).id)
  t.equal(firstIds.length, 100_000)
  t.equal(firstIds[0], sorted[0])
  t.equal(firstIds[99_999], sorted[99_999])
  t.equal(first.result.sha256, sha256(first.file))

  const second = await exportPage(app, u.headers, 'acme', 'users', first.result.nextCursor)
  t.equal(second.result.total, 1)
  t.equal(second.result.nextCursor, null)
  t.same(ndjsonLines(second.file).map((l) => JSON.parse(l).id), [sorted[100_000]], 'the last id')
})
