import http, { type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'

/** What the proxy does with one request instead of (or on top of) forwarding it. */
export type Fault =
  | { status: number, retryAfter?: string }
  /** Closes the client's connection without an answer. */
  | { drop: true }
  /** Forwards, but cuts the answer's body after this many bytes. */
  | { cutAfter: number }
  /** Runs `before`, then forwards. */
  | { before: () => Promise<void> }
  /** Forwards after waiting this long. */
  | { delayMs: number }
  /** Forwards once this settles (never: the request is held until the proxy closes). */
  | { hold: Promise<unknown> }
  /** Forwards, and answers the client with this change of the JSON answer. */
  | { rewriteJson: (body: any) => unknown }
  /** Forwards, with one byte of the body changed at this offset. */
  | { corruptAt: number }

/** One request the proxy saw. */
export interface Seen { method: string, url: string, headers: IncomingMessage['headers'], at: number, endedAt?: number }

/**
 * A loopback HTTP proxy in front of a real server, for clients under test: it records
 * every request and, where `fault` says so, answers 503/429, drops the connection, cuts
 * a body short or delays it. Everything else is forwarded as it is.
 */
export async function startFaultProxy (t: { teardown: (fn: () => unknown) => void }, target: string, fault: (req: IncomingMessage, seen: Seen[]) => Fault | undefined) {
  const seen: Seen[] = []
  const upstream = new URL(target)
  const server = http.createServer((req, res) => {
    const entry: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, at: Date.now() }
    seen.push(entry)
    const f = fault(req, seen)
    if (f && 'status' in f) {
      req.resume()
      res.writeHead(f.status, { 'content-type': 'application/problem+json', ...(f.retryAfter ? { 'retry-after': f.retryAfter } : {}) })
      res.end(JSON.stringify({ type: 'urn:test:fault', title: 'injected', status: f.status, code: f.status === 429 ? 'RATE_LIMITED' : 'SERVICE_UNAVAILABLE' }))
      entry.endedAt = Date.now()
      return
    }
    if (f && 'drop' in f) {
      req.socket.destroy()
      return
    }
    const forward = async (): Promise<void> => {
      if (f && 'before' in f) await f.before()
      if (f && 'delayMs' in f) await new Promise((resolve) => setTimeout(resolve, f.delayMs))
      if (f && 'hold' in f) await f.hold
      // The Host stays the proxy's: the links the server hands out come back through it.
      const out = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        if (f && 'rewriteJson' in f) {
          const chunks: Buffer[] = []
          answer.on('data', (c: Buffer) => chunks.push(c))
          answer.on('end', () => {
            const text = JSON.stringify(f.rewriteJson(JSON.parse(Buffer.concat(chunks).toString())))
            const headers = { ...answer.headers, 'content-length': String(Buffer.byteLength(text)) }
            delete headers['content-encoding']
            res.writeHead(answer.statusCode ?? 502, headers)
            res.end(text)
            entry.endedAt = Date.now()
          })
          return
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        let sent = 0
        answer.on('data', (chunk: Buffer) => {
          if (f && 'cutAfter' in f && sent + chunk.length > f.cutAfter) {
            answer.destroy()
            // The bytes up to the cut reach the client; then the connection goes.
            res.write(chunk.subarray(0, Math.max(0, f.cutAfter - sent)), () => setTimeout(() => res.socket?.destroy(), 50))
            sent = Infinity
            return
          }
          if (sent === Infinity) return
          if (f && 'corruptAt' in f && f.corruptAt >= sent && f.corruptAt < sent + chunk.length) {
            chunk = Buffer.from(chunk)
            chunk[f.corruptAt - sent] ^= 0x01
          }
          sent += chunk.length
          res.write(chunk)
        })
        answer.on('end', () => {
          entry.endedAt = Date.now()
          res.end()
        })
      })
      out.on('error', () => res.socket?.destroy())
      req.pipe(out)
    }
    forward().catch(() => res.socket?.destroy())
  })
  server.keepAliveTimeout = 1000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}
