/** The black-box check's data: a firm and two users through the admin API, then one streamed import. */
import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { makeUser, prng } from '../demo-data.js'
import { fmt, mb } from '../format.js'
import { check, finish, section } from './checks.js'
import type { Target } from './target.js'

/** A user of the firm and its token. */
export interface User { userId: string, token: string }

/**
 * Creates the firm (checking 201, then 200 when put again), an empty second firm and two
 * users of the first, checking the admin API's answers on the way.
 */
export async function setUp (t: Target, adminToken: string, otherFirm: string): Promise<{ userA: User, userB: User }> {
  section('setup (admin API)')
  const r = await t.call('PUT', `/api/v1/admin/firms/${t.firm}`, { token: adminToken, body: { name: 'Blackbox Corp' } })
  check(r.status === 201 && r.json?.firmId === t.firm, 'PUT firm → 201', { status: r.status, body: r.text })
  const again = await t.call('PUT', `/api/v1/admin/firms/${t.firm}`, { token: adminToken, body: { name: 'Blackbox Corp' } })
  check(again.status === 200, 'PUT firm again → 200 (idempotent)', { status: again.status })
  const o = await t.call('PUT', `/api/v1/admin/firms/${otherFirm}`, { token: adminToken })
  check(o.status === 201, 'PUT a second firm (no body) → 201', { status: o.status, body: o.text })
  const noAdmin = await t.call('PUT', `/api/v1/admin/firms/${t.firm}`)
  check(noAdmin.status === 401 && /^Bearer/i.test(noAdmin.headers.get('www-authenticate') ?? ''), 'admin API without token → 401 + WWW-Authenticate: Bearer', { status: noAdmin.status, www: noAdmin.headers.get('www-authenticate') })

  const createUser = async (name: string): Promise<User> => {
    const u = await t.call('POST', '/api/v1/admin/users', { token: adminToken, body: { name, firms: [t.firm] } })
    check(u.status === 201 && typeof u.json?.token === 'string' && typeof u.json?.userId === 'string', `POST user '${name}' → 201 {userId, token}`, { status: u.status, body: u.text.slice(0, 200) })
    if (u.status !== 201) finish()
    return { userId: u.json.userId, token: u.json.token }
  }
  return { userA: await createUser('blackbox A'), userB: await createUser('blackbox B') }
}

/**
 * Imports `n` SCIM-like users as ONE streamed application/x-ndjson body, generated on the
 * fly, recording each line's hash in `t.imported` for the downloads to be checked against.
 */
export async function importObjects (t: Target, token: string, n: number, seed: number): Promise<void> {
  section(`import ${fmt(n)} objects as one streamed application/x-ndjson body`)
  let importBytes = 0
  let duplicateIds = 0
  const rand = prng(seed)
  const enc = new TextEncoder()
  let i = 0
  const BATCH = 500
  const body = new ReadableStream<Uint8Array>({
    pull (controller) {
      if (i >= n) { controller.close(); return }
      let chunk = ''
      const end = Math.min(n, i + BATCH)
      for (; i < end; i++) {
        const line = JSON.stringify(makeUser(rand, i))
        const bytes = enc.encode(line)
        const id = (JSON.parse(line) as { id: string }).id
        if (t.imported.has(id)) duplicateIds++
        t.imported.set(id, createHash('sha256').update(bytes).digest('base64'))
        chunk += line + '\n'
      }
      const buf = enc.encode(chunk)
      importBytes += buf.byteLength
      controller.enqueue(buf)
    },
  })
  const t0 = performance.now()
  const res = await fetch(t.url(`/api/v1/idm/${t.firm}/${t.type}/import`), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body,
    duplex: 'half',
    signal: AbortSignal.timeout(30 * 60_000),
  } as RequestInit & { duplex: 'half' })
  const text = await res.text()
  const secs = (performance.now() - t0) / 1000
  let json: any
  try { json = JSON.parse(text) } catch {}
  check(res.status === 200 && json?.imported === n && Object.keys(json).length === 1, `import → 200 {"imported": ${n}}`, { status: res.status, body: text.slice(0, 300) })
  check(duplicateIds === 0, 'generated ids are unique', { duplicateIds })
  console.log(`  time import: ${fmt(n)} objects, ${fmt(mb(importBytes), 1)} MB in ${fmt(secs, 2)} s = ${fmt(n / secs)} obj/s, ${fmt(mb(importBytes) / secs, 1)} MB/s (avg ${fmt(importBytes / n)} B/object)`)
  if (res.status !== 200) finish()
}
