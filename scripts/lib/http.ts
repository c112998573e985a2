/** The two ways the scripts talk HTTP: fetch for API calls, node:http where sockets matter. */
import http from 'node:http'
import { assertLocal } from './local-url.js'

/** An answer of `fetchJson`: the body as text and, when it parses, as JSON. */
export interface JsonReply {
  status: number
  headers: Headers
  text: string
  json: any
}

/**
 * One API call with fetch, to a local URL only. The body is read whole, and parsed when it
 * is JSON, so that a caller can report an unexpected answer as it came.
 */
export async function fetchJson (url: string | URL, opts: { method?: string, token?: string | null, body?: unknown, headers?: Record<string, string>, timeoutMs?: number } = {}): Promise<JsonReply> {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  let body: string | undefined
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body)
    headers['content-type'] ??= 'application/json'
  }
  const res = await fetch(assertLocal(url), { method: opts.method ?? 'GET', headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000) })
  const text = await res.text()
  let json: any
  try { json = text ? JSON.parse(text) : undefined } catch { json = undefined }
  return { status: res.status, headers: res.headers, text, json }
}

/** An answer of `request`. */
export interface HttpReply {
  status: number
  headers: http.IncomingHttpHeaders
  /** Body bytes received, whether kept or not. */
  bytes: number
  /** The body, when `keepBody` was set; empty otherwise. */
  body: Buffer
  /** Whether the request went over a keep-alive connection opened earlier. */
  reusedSocket: boolean
}

/** Options of `request`. */
export interface RequestOptions {
  method?: string
  headers?: Record<string, string>
  /** A request body; Content-Length is set from it. */
  body?: string
  /** The connection pool: a latency probe wants its own keep-alive connection. */
  agent?: http.Agent
  /** Fail with code TIMEOUT when the socket is idle this long. */
  timeoutMs?: number
  /** Keep the body in `reply.body`. Off by default: a 100 MB file is counted, not held. */
  keepBody?: boolean
  /** Sees the response head; the consumer it returns gets every body chunk. */
  onResponse?: (res: http.IncomingMessage) => ((chunk: Buffer) => void) | undefined
}

/**
 * One request with node:http, to a local URL only: keep-alive agents and streamed bodies
 * as a load client needs them, which fetch does not give. Rejects on network errors.
 */
export function request (url: URL, opts: RequestOptions = {}): Promise<HttpReply> {
  const headers = opts.body === undefined ? opts.headers : { ...opts.headers, 'content-length': String(Buffer.byteLength(opts.body)) }
  return new Promise((resolve, reject) => {
    const req = http.request(assertLocal(url), { method: opts.method ?? 'GET', agent: opts.agent, headers }, (res) => {
      const onData = opts.onResponse?.(res)
      const parts: Buffer[] = []
      let bytes = 0
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length
        onData?.(chunk)
        if (opts.keepBody) parts.push(chunk)
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, body: Buffer.concat(parts), reusedSocket: req.reusedSocket }))
      res.on('error', reject)
      res.on('aborted', () => reject(new Error('response aborted')))
    })
    if (opts.timeoutMs !== undefined) {
      const timeoutMs = opts.timeoutMs
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer in ${timeoutMs} ms`), { code: 'TIMEOUT' })))
    }
    req.on('error', reject)
    req.end(opts.body)
  })
}
