/**
 * The import benchmark's client, a process of its own (forked by scripts/bench-import.ts)
 * so that the benchmark's RSS is the server's alone: generates N SCIM-like users on the
 * fly and streams them as one chunked NDJSON body (no Content-Length, nothing held in
 * memory beyond one 256 KiB chunk) to POST …/import, honouring back-pressure.
 */
import { once } from 'node:events'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { makeUser, prng } from '../demo-data.js'
import { runChild, type ChildIo } from '../ipc.js'
import { assertLocal } from '../local-url.js'

const CHUNK_BYTES = 256 * 1024
const PROGRESS_STEPS = 10

/** What the server tells the client. */
export interface ImportParams { url: string, token: string, objects: number }

/** What the client measured. */
export interface ImportResult {
  status: number
  body: string
  objects: number
  bytes: number
  /** First byte written → last byte written. */
  sendMs: number
  /** First byte written → response complete (includes the final merge). */
  totalMs: number
  /** Time the client spent generating and serializing objects. */
  generateMs: number
}

/** Server → client. */
export type ImportIn = { type: 'init', params: ImportParams }

/** Client → server at each tenth of the body, so the server can sample its RSS there. */
export type ImportOut = { type: 'progress', objects: number, bytes: number, ms: number }

async function runClient (io: ChildIo<ImportIn, ImportOut>): Promise<ImportResult> {
  const { url, token, objects } = (await io.next('init')).params
  const rand = prng(20240601)
  const req = http.request(assertLocal(url), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
  })
  const response = new Promise<{ status: number, body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  // An early answer (a 4xx on a bad line, say) ends the upload.
  const answered = new AbortController()
  response.then(() => answered.abort(), () => answered.abort())

  const t0 = performance.now()
  const step = Math.max(1, Math.ceil(objects / PROGRESS_STEPS))
  let bytes = 0
  let parts: string[] = []
  let partBytes = 0
  const flush = async (): Promise<void> => {
    const chunk = Buffer.from(parts.join(''), 'utf8')
    parts = []
    partBytes = 0
    bytes += chunk.length
    if (!req.write(chunk)) await Promise.race([once(req, 'drain'), response])
  }
  let generateMs = 0
  for (let n = 0; n < objects && !answered.signal.aborted; n++) {
    const g0 = performance.now()
    const line = JSON.stringify(makeUser(rand, n)) + '\n'
    generateMs += performance.now() - g0
    parts.push(line)
    partBytes += line.length // close enough to bytes for chunking: names are mostly ASCII
    if (partBytes >= CHUNK_BYTES) await flush()
    if ((n + 1) % step === 0 && n + 1 < objects) io.send({ type: 'progress', objects: n + 1, bytes: bytes + partBytes, ms: performance.now() - t0 })
  }
  if (parts.length && !answered.signal.aborted) await flush()
  req.end()
  const sendMs = performance.now() - t0
  const res = await response
  return { ...res, objects, bytes, sendMs, totalMs: performance.now() - t0, generateMs }
}

await runChild(runClient)
