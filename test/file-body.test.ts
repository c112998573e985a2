import tap, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip, gunzipSync } from 'node:zlib'
import Fastify from 'fastify'
import { allocatedBuffers, CHUNK_BYTES, FileBody } from '../src/files/file-body.js'
import { createLocalStorage } from '../src/files/local-storage.js'
import { FileGoneError } from '../src/files/storage.js'
import { fdsSettled, openFds, slowGet } from './helpers/exports.js'

/** A body of bytes `start`..+`length` of the file at `path` (it owns the handle opened here). */
const bodyOf = async (path: string, start: number, length: number): Promise<FileBody> => new FileBody(await open(path, 'r'), start, length)

/** A file of random bytes spanning several read buffers and a part of one. */
function randomFile (t: Test, bytes = 3 * CHUNK_BYTES + 12_345): { path: string, content: Buffer } {
  const path = join(t.testdir(), 'f.ndjson')
  const content = randomBytes(bytes)
  writeFileSync(path, content)
  return { path, content }
}

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
    const body = await bodyOf(path, start, length)
    await pipeline(body, out.sink)
    t.same(out.bytes(), content.subarray(start, start + length), `bytes ${start}..+${length}`)
    t.equal(out.overwritten(), 0, 'every chunk still held its bytes at its callback')
    if (!body.closed) await once(body, 'close')
    t.ok(body.destroyed, 'the body ends (and closes its file)')
  }
})

tap.test('downloads one after another reuse the pooled buffers', async (t) => {
  const { path, content } = randomFile(t)
  await pipeline(await bodyOf(path, 0, content.length), slowSink(0).sink)
  const allocated = allocatedBuffers()
  await pipeline(await bodyOf(path, 0, content.length), slowSink(0).sink)
  t.equal(allocatedBuffers(), allocated, 'the next one allocated none: it took them from the pool')
  // Two at once take buffers from the same pool and give them back.
  const a = slowSink(1)
  const b = slowSink(1)
  await Promise.all([pipeline(await bodyOf(path, 0, content.length), a.sink), pipeline(await bodyOf(path, 5, content.length - 5), b.sink)])
  t.same(a.bytes(), content)
  t.same(b.bytes(), content.subarray(5))
  t.equal(a.overwritten() + b.overwritten(), 0, 'sharing the pool overwrote nothing in flight')
  const afterTwo = allocatedBuffers()
  await Promise.all([pipeline(await bodyOf(path, 0, content.length), slowSink(1).sink), pipeline(await bodyOf(path, 0, content.length), slowSink(1).sink)])
  t.equal(allocatedBuffers(), afterTwo, 'and two at once again allocate none')
})

tap.test('through gzip, as @fastify/compress pipes it, the body is whole', async (t) => {
  const { path, content } = randomFile(t, 2 * CHUNK_BYTES + 99)
  const out = slowSink()
  await pipeline(await bodyOf(path, 0, content.length), createGzip({ level: 1 }), out.sink)
  t.same(gunzipSync(out.bytes()), content)
})

tap.test('read without pipe (async iteration), the body is the same bytes', async (t) => {
  const { path, content } = randomFile(t)
  const chunks: Buffer[] = []
  for await (const chunk of await bodyOf(path, 10, content.length - 20)) chunks.push(chunk as Buffer)
  t.same(Buffer.concat(chunks), content.subarray(10, content.length - 10))
})

tap.test('a destination that goes away stops the body without an error, and its file is closed', async (t) => {
  const { path, content } = randomFile(t)
  const before = openFds()
  const out = slowSink(5)
  const body = await bodyOf(path, 0, content.length)
  t.equal(openFds(), before + 1, 'the body holds its file open')
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
  const body = await bodyOf(path, 0, content.length)
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
  await t.rejects(pipeline(await bodyOf(path, 0, content.length + 100), out.sink), /ended 100 bytes before the range did/)
  const chunks: Buffer[] = []
  const body = await bodyOf(path, 0, content.length + 1)
  await t.rejects((async () => { for await (const c of body) chunks.push(c as Buffer) })(), /ended 1 bytes before/)
})

tap.test('the local storage sends a file whole or not at all: one removed before is gone, one removed while it is sent is sent whole', async (t) => {
  const dir = t.testdir()
  const storage = createLocalStorage(dir)
  const content = randomBytes(6 * CHUNK_BYTES)
  writeFileSync(join(dir, 'a.ndjson'), content)
  const app = Fastify()
  const errors: Error[] = []
  app.setErrorHandler((err: Error, _request, reply) => {
    errors.push(err)
    return reply.code(err instanceof FileGoneError ? 410 : 500).send({ name: err.name })
  })
  app.get<{ Params: { name: string } }>('/f/:name', (request, reply) => storage.send(reply, request.params.name))
  t.teardown(() => app.close())
  const base = await app.listen({ port: 0, host: '127.0.0.1' })

  const missing = await fetch(`${base}/f/missing.ndjson`)
  t.equal(missing.status, 410, 'a file that is not there is a FileGoneError')
  t.equal(errors[0]?.name, 'FileGoneError')

  const fds = openFds()
  const got = await slowGet(`${base}/f/a.ndjson`, () => rmSync(join(dir, 'a.ndjson')))
  t.ok(got.equals(content), 'removed after the first bytes, the file still arrived whole')
  t.ok(await fdsSettled(fds) <= fds, 'and its handle is closed')
  t.equal(errors.length, 1, 'with no error')
})

tap.test('a body is piped once', async (t) => {
  const { path, content } = randomFile(t, 10)
  const body = await bodyOf(path, 0, content.length)
  const out = slowSink(0)
  body.pipe(out.sink)
  t.throws(() => body.pipe(slowSink(0).sink), /piped once/)
  await once(out.sink, 'finish')
  t.same(out.bytes(), content)
})
