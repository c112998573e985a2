/**
 * The export benchmark's chain client, a process of its own (forked by
 * scripts/bench-export.ts): runs the whole export chain over HTTP (start → poll every
 * 100 ms → download → follow nextCursor …), scanning every file's ids, then downloads the
 * first page again, plain and gzip, on the idle server.
 */
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { createGunzip } from 'node:zlib'
import { fetchJson, request } from '../http.js'
import { IdScanner } from '../id-scanner.js'
import { runChild, type ChildIo } from '../ipc.js'
import { assertLocal } from '../local-url.js'
import { usageMeter, type Usage } from '../meters.js'
import { nowMs } from './clock.js'

const POLL_MS = 100

/** What the server tells the chain client. */
export interface ChainParams { base: string, token: string, firmId: string, objectType: string }

/** One page of the chain, as the client saw it. */
export interface PageResult {
  requestId: string
  total: number
  lines: number
  bytes: number
  reportedBytes: number
  /** createdAt (server clock) → first poll that saw Completed (client clock, same machine). */
  jobMs: number
  polls: number
  downloadMs: number
  endsWithNewline: boolean
  nextCursorNull: boolean
}

/** The first page downloaded again, plain and with Accept-Encoding: gzip. */
export interface GzipResult {
  encoding: string
  compressedBytes: number
  decompressedBytes: number
  expectedBytes: number
  ms: number
  plainMs: number
  plainBytes: number
}

/** Everything the chain client measured. */
export interface ChainResult {
  pages: PageResult[]
  /** Epoch ms (with fractions): whole chain and each job's [POST sent, Completed seen]. */
  chainFrom: number
  chainTo: number
  windows: Array<[number, number]>
  lines: number
  bytes: number
  outOfOrder: number
  unparsed: number
  lastCursorNull: boolean
  gzip: GzipResult | null
  usage: Usage
}

/** Server → chain client. `go` answers `chainStart` (the meters run) and `chainEnd` (the probes stopped). */
export type ChainIn = { type: 'init', params: ChainParams } | { type: 'go' }

/** Chain client → server, before its result. */
export type ChainOut =
  | { type: 'chainStart' }
  | { type: 'jobStarted', requestId: string }
  | { type: 'page', index: number, page: PageResult }
  | { type: 'chainEnd', windows: Array<[number, number]>, chainFrom: number, chainTo: number }

interface StatusView { status: string, createdAt: string, result?: { total: number, fileUrl: string, nextCursor: string | null, bytes: number }, error?: unknown }

async function runChain (io: ChildIo<ChainIn, ChainOut>): Promise<ChainResult> {
  const p = (await io.next('init')).params
  const base = assertLocal(p.base)
  const windows: Array<[number, number]> = []
  const scanner = new IdScanner()
  const pages: PageResult[] = []
  let cursor: string | null = null
  let lastCursorNull = false
  let firstFileUrl: string | null = null
  let firstPageBytes = 0

  io.send({ type: 'chainStart' })
  await io.next('go') // the server has started its meters and the probes are running
  const usage = usageMeter()
  const chainFrom = nowMs()
  do {
    const post0 = nowMs()
    const started = await fetchJson(new URL(`/api/v1/idm/${p.firmId}/${p.objectType}/export`, base), { method: 'POST', token: p.token, body: cursor === null ? {} : { cursor } })
    const requestId: unknown = started.json?.requestId
    if (started.status !== 200 || typeof requestId !== 'string') throw new Error(`start export: ${started.status} ${started.text}`)
    io.send({ type: 'jobStarted', requestId })
    let view: StatusView
    let polls = 0
    for (;;) {
      const r = await fetchJson(new URL(`/api/v1/request/${requestId}`, base), { token: p.token })
      view = r.json as StatusView
      polls++
      if (r.status !== 200) throw new Error(`status: ${r.status} ${r.text}`)
      if (view.status === 'Completed') break
      if (view.status === 'Failed') throw new Error(`export failed: ${JSON.stringify(view.error)}`)
      await sleep(POLL_MS)
    }
    const completed = nowMs()
    windows.push([post0, completed])
    const result = view.result
    if (!result) throw new Error('Completed without a result')
    const jobMs = completed - Date.parse(view.createdAt)

    const dl0 = performance.now()
    const linesBefore = scanner.lines
    const bytesBefore = scanner.bytes
    await download(result.fileUrl, scanner)
    const page: PageResult = {
      requestId,
      total: result.total,
      lines: scanner.lines - linesBefore,
      bytes: scanner.bytes - bytesBefore,
      reportedBytes: result.bytes,
      jobMs,
      polls,
      downloadMs: performance.now() - dl0,
      endsWithNewline: result.total === 0 || scanner.lastByte === 0x0a,
      nextCursorNull: result.nextCursor === null,
    }
    pages.push(page)
    io.send({ type: 'page', index: pages.length, page })
    if (firstFileUrl === null) {
      firstFileUrl = result.fileUrl
      firstPageBytes = result.bytes
    }
    cursor = result.nextCursor
    lastCursorNull = cursor === null
  } while (cursor !== null)
  const chainTo = nowMs()
  const chainUsage = usage()
  io.send({ type: 'chainEnd', windows, chainFrom, chainTo })
  await io.next('go') // the probes have stopped: the server is idle

  const gzip = firstFileUrl !== null && firstPageBytes > 0 ? await plainAndGzip(assertLocal(firstFileUrl), firstPageBytes) : null
  return {
    pages,
    chainFrom,
    chainTo,
    windows,
    lines: scanner.lines,
    bytes: scanner.bytes,
    outOfOrder: scanner.outOfOrder,
    unparsed: scanner.unparsed,
    lastCursorNull,
    gzip,
    usage: chainUsage,
  }
}

/** Streams one file to /dev/null (as a client saving it would), through the scanner. */
async function download (fileUrl: string, scanner: IdScanner): Promise<void> {
  scanner.beginFile()
  const fileRes = await fetch(assertLocal(fileUrl))
  if (fileRes.status !== 200 || !fileRes.body) throw new Error(`download: ${fileRes.status}`)
  const sink = createWriteStream('/dev/null')
  for await (const chunk of fileRes.body) {
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    scanner.push(buf)
    if (!sink.write(buf)) await once(sink, 'drain')
  }
  sink.end()
  await once(sink, 'finish')
}

/** The first page again, plain and gzip, one after the other. */
async function plainAndGzip (url: URL, expectedBytes: number): Promise<GzipResult> {
  const plain0 = performance.now()
  const plain = await request(url)
  const plainMs = performance.now() - plain0
  let decompressedBytes = 0
  let inflated: Promise<unknown> = Promise.resolve()
  const gz0 = performance.now()
  const gz = await request(url, {
    headers: { 'accept-encoding': 'gzip' },
    onResponse: (res) => {
      if (res.headers['content-encoding'] !== 'gzip') return undefined
      const gunzip = createGunzip()
      gunzip.on('data', (c: Buffer) => { decompressedBytes += c.length })
      inflated = once(gunzip, 'end')
      res.on('end', () => gunzip.end())
      return (c) => { gunzip.write(c) }
    },
  })
  const ms = performance.now() - gz0
  const encoding = String(gz.headers['content-encoding'] ?? 'identity')
  if (encoding === 'gzip') await inflated
  else decompressedBytes = gz.bytes
  return { encoding, compressedBytes: gz.bytes, decompressedBytes, expectedBytes, ms, plainMs, plainBytes: plain.bytes }
}

await runChild(runChain)
