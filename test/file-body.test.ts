import tap, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip, gunzipSync } from 'node:zlib'
import { CHUNK_BYTES, FileBody, freeBuffers } from '../src/files/file-body.js'

/** A file of random bytes spanning several read buffers and a part of one. */
function randomFile (t: Test, bytes = 3 * CHUNK_BYTES + 12_345): { path: string, content: Buffer } {
  const path = join(t.testdir(), 'f.ndjson')
  const content = randomBytes(bytes)
  writeFileSync(path, content)
  return { path, content }
}

const openFds = (): number => readdirSync('/proc/self/fd').length

/**
 * A destination that calls back a few turns after each write, as a busy socket does, and
 * checks at that moment that the chunk it was handed still holds the bytes it held when
 * written: a buffer reused before its callback would fail it.
 */
function slowSink (delayMs = 2) {
  const chunks: Buffer[] = []
  let overwritten = 0
  const sink = new Writable({
    highWaterMark: 16 * 1024,
    write (chunk: Buffer, _encoding, callback) {
      const copy = Buffer.from(chunk)
      setTimeout(() => {
        if (!copy.equals(chunk)) overwritten++
        chunks.push(copy)
        callback()
      }, delayMs)
    },
  })
  return { sink, bytes: () => Buffer.concat(chunks), overwritten: () => overwritten }
}

tap.test('piped, the body is the exact range and no buffer is overwritten while the destination holds it', async (t) => {
  const { path, content } = randomFile(t)
  for (const [start, length] of [[0, content.length], [1, content.length - 1], [CHUNK_BYTES - 3, CHUNK_BYTES + 7], [content.length - 5, 5], [17, 0]]) {
    const out = slowSink()
    const body = new FileBody(path, start, length)
    await pipeline(body, out.sink)
    t.same(out.bytes(), content.subarray(start, start + length), `bytes ${start}..+${length}`)
    t.equal(out.overwritten(), 0, 'every chunk still held its bytes at its callback')
    t.ok(body.destroyed, 'the body ends (and closes its file)')
  }
})

tap.test('downloads one after another reuse the pooled buffers', async (t) => {
  const { path, content } = randomFile(t)
  await pipeline(new FileBody(path, 0, content.length), slowSink(0).sink)
  const free = freeBuffers()
  t.ok(free >= 2, `buffers went back to the pool (${free})`)
  // Two at once take buffers from the same pool and give them back.
  const a = slowSink(1)
  const b = slowSink(1)
  await Promise.all([pipeline(new FileBody(path, 0, content.length), a.sink), pipeline(new FileBody(path, 5, content.length - 5), b.sink)])
  t.same(a.bytes(), content)
  t.same(b.bytes(), content.subarray(5))
  t.equal(a.overwritten() + b.overwritten(), 0, 'sharing the pool overwrote nothing in flight')
  t.ok(freeBuffers() >= free, 'and the pool did not shrink')
})

tap.test('through gzip, as @fastify/compress pipes it, the body is whole', async (t) => {
  const { path, content } = randomFile(t, 2 * CHUNK_BYTES + 99)
  const out = slowSink()
  await pipeline(new FileBody(path, 0, content.length), createGzip({ level: 1 }), out.sink)
  t.same(gunzipSync(out.bytes()), content)
})

tap.test('read without pipe (async iteration), the body is the same bytes', async (t) => {
  const { path, content } = randomFile(t)
  const chunks: Buffer[] = []
  for await (const chunk of new FileBody(path, 10, content.length - 20)) chunks.push(chunk as Buffer)
  t.same(Buffer.concat(chunks), content.subarray(10, content.length - 10))
})

tap.test('a destination that goes away stops the body without an error, and its file is closed', async (t) => {
  const { path, content } = randomFile(t)
  const before = openFds()
  const out = slowSink(5)
  const body = new FileBody(path, 0, content.length)
  const errors: Error[] = []
  body.on('error', (err) => errors.push(err))
  body.pipe(out.sink)
  // After the first chunk, the client hangs up (as a socket does, the destination is destroyed).
  await new Promise((resolve) => setTimeout(resolve, 15))
  out.sink.destroy()
  // Fastify destroys a body whose response closed; here the destination's write callbacks fail first.
  if (!body.destroyed) await once(body, 'close')
  t.same(errors, [], 'no error: a client leaving is not a fault of the file')
  t.ok(out.bytes().length < content.length, 'it stopped before the end')
  t.equal(openFds(), before, 'the file handle is closed')
})

tap.test('a body destroyed while it waits on its destination closes its file', async (t) => {
  const { path, content } = randomFile(t)
  const before = openFds()
  // A destination that never calls back: a client that stopped reading.
  const stuck = new Writable({ write () {} })
  const body = new FileBody(path, 0, content.length)
  body.pipe(stuck)
  await new Promise((resolve) => setTimeout(resolve, 20))
  body.destroy()
  await once(body, 'close')
  t.equal(openFds(), before, 'the file handle is closed')
  stuck.destroy()
})

tap.test('a file shorter than its range is an error, not a short body', async (t) => {
  const { path, content } = randomFile(t, CHUNK_BYTES + 10)
  const out = slowSink(0)
  await t.rejects(pipeline(new FileBody(path, 0, content.length + 100), out.sink), /ended 100 bytes before the range did/)
  const chunks: Buffer[] = []
  await t.rejects((async () => { for await (const c of new FileBody(path, 0, content.length + 1)) chunks.push(c as Buffer) })(), /ended 1 bytes before/)
  await t.rejects(pipeline(new FileBody(join(t.testdir(), 'missing'), 0, 10), slowSink(0).sink), { code: 'ENOENT' })
})

tap.test('a body is piped once', async (t) => {
  const { path, content } = randomFile(t, 10)
  const body = new FileBody(path, 0, content.length)
  const out = slowSink(0)
  body.pipe(out.sink)
  t.throws(() => body.pipe(slowSink(0).sink), /piped once/)
  await once(out.sink, 'finish')
  t.same(out.bytes(), content)
})
