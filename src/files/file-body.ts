import type { FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'

/**
 * Bytes per read. 1 MiB instead of the 64 KiB streams default: each read is a turn of the
 * event loop, and under polling load small reads cut download speed by an order of magnitude.
 */
export const CHUNK_BYTES = 1 << 20

/** Reads of one body on their way to its destination at a time: one written while the next is read. */
const DEPTH = 2

/**
 * Free read buffers, shared by all downloads; at most this many are kept (8 MiB). A piped
 * body holds at most DEPTH at a time, so up to four downloads at once allocate nothing;
 * more take fresh buffers and keep only what fits back in the pool.
 */
const POOL_SIZE = 8
const pool: Buffer[] = []
let allocated = 0
const take = (): Buffer => {
  const free = pool.pop()
  if (free !== undefined) return free
  allocated++
  return Buffer.allocUnsafeSlow(CHUNK_BYTES)
}
const recycle = (buffer: Buffer): void => {
  if (pool.length < POOL_SIZE) pool.push(buffer)
}

/** How many read buffers have been allocated for piped bodies so far (for tests). */
export const allocatedBuffers = (): number => allocated

type Sink = NodeJS.WritableStream & { destroyed?: boolean }

/**
 * The bytes `start` to `start + length - 1` of an open file as a readable body that reuses a few
 * read buffers when it is piped (the way Fastify and @fastify/compress consume a body).
 *
 * Why: a download of a 35 MB export file read as a stream allocates 35 fresh 1 MiB
 * buffers. Those queued on a slow socket live long enough to be promoted, and V8 answers
 * their external memory with main-thread mark-compacts (10–30 ms every ~0.5 s while two
 * clients download), which is what set the status p99 during pulls. Here `pipe` writes each
 * chunk with a callback and hands its buffer back to a shared pool only once the destination
 * has called back (the socket has taken the bytes, or zlib has consumed them): no buffer is
 * overwritten while anything still reads it, and a download allocates nothing per chunk.
 * A buffer whose write failed is never reused.
 *
 * Other ways of reading (`read()`, `'data'`, async iteration) get fresh buffers. `pipe` to a
 * single destination is supported; `unpipe` is not (nothing here unpipes a body).
 */
export class FileBody extends Readable {
  readonly #handle: FileHandle
  #position: number
  #left: number
  #piped = false
  /** Settles when the body is destroyed: a pump waiting on a destination stops waiting. */
  readonly #destroyed: Promise<void>
  #markDestroyed!: () => void

  /** The body owns `handle` from here on: it closes it when it ends or is destroyed. */
  constructor (handle: FileHandle, start: number, length: number) {
    super()
    this.#handle = handle
    this.#position = start
    this.#left = length
    this.#destroyed = new Promise((resolve) => { this.#markDestroyed = resolve })
  }

  /** Reads the next chunk into `buffer`; a file shorter than the range is an error. */
  async #readInto (buffer: Buffer): Promise<Buffer> {
    const want = Math.min(buffer.length, this.#left)
    const { bytesRead } = await this.#handle.read(buffer, 0, want, this.#position)
    if (bytesRead === 0) throw new Error(`the file ended ${this.#left} bytes before the range did`)
    this.#position += bytesRead
    this.#left -= bytesRead
    return bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead)
  }

  override _read (): void {
    if (this.#left === 0) {
      this.push(null)
      return
    }
    this.#readInto(Buffer.allocUnsafe(Math.min(CHUNK_BYTES, this.#left))).then(
      (chunk) => { this.push(chunk) },
      (err: Error) => { this.destroy(err) })
  }

  override pipe<T extends NodeJS.WritableStream> (destination: T, options?: { end?: boolean }): T {
    if (this.#piped || this.readableFlowing !== null) throw new Error('a FileBody is piped once, and only if nothing else reads it')
    this.#piped = true
    // Destroyed before anyone read it: nothing to send (and its file is closed already).
    if (this.destroyed) return destination
    destination.emit('pipe', this)
    this.#pump(destination, options?.end !== false).then(
      (whole) => {
        if (!whole) {
          // Stopped by a destination that went away: no 'end' as if all had been read.
          this.destroy()
          return
        }
        // Ends this side as a stream does: 'end', then (autoDestroy) 'close'.
        this.push(null)
        this.read(0)
      },
      (err: Error) => { if (!this.destroyed) this.destroy(err) })
    return destination
  }

  /**
   * Writes the range to `sink`, DEPTH reads in flight, reusing each buffer after its write's
   * callback. False if it stopped early: the body was destroyed or the sink went away.
   */
  async #pump (sink: Sink, end: boolean): Promise<boolean> {
    const inFlight: Array<{ buffer: Buffer, written: Promise<Error | null | undefined> }> = []
    // Waits for the oldest write; false if the body was destroyed meanwhile (its buffer is dropped).
    const settleOldest = async (): Promise<boolean> => {
      const { buffer, written } = inFlight.shift() as typeof inFlight[number]
      const err = await Promise.race([written, this.#destroyed.then(() => null)])
      if (this.destroyed) return false
      if (err) {
        // A client that went away is not an error of the body: it just stops.
        if (sink.destroyed === true) return false
        throw err
      }
      recycle(buffer)
      return true
    }
    while (this.#left > 0) {
      if (inFlight.length === DEPTH && !await settleOldest()) return false
      const buffer = take()
      let chunk: Buffer
      try {
        chunk = await this.#readInto(buffer)
      } catch (err) {
        recycle(buffer)
        throw err
      }
      if (this.destroyed || sink.destroyed === true) return false
      inFlight.push({ buffer, written: new Promise((resolve) => sink.write(chunk, resolve)) })
    }
    while (inFlight.length > 0) {
      if (!await settleOldest()) return false
    }
    if (end) sink.end()
    return true
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    this.#markDestroyed()
    // Closing waits for a read in progress.
    this.#handle.close().then(() => callback(err), () => callback(err))
  }
}
