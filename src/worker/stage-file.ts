import { readSync, writeSync } from 'node:fs'

/**
 * The staged lines of an import in a file of its own: frames of
 * `[u32 id bytes][u32 doc bytes][id][doc]` (little-endian), appended in body order. Pure
 * byte handling: no SQLite, no thread. Written once, read once by the merge, then removed.
 */
const HEADER = 8

/** Appends frames to a file descriptor through one reusable buffer. */
export class StageWriter {
  private buffer: Buffer
  private used = 0

  constructor (private readonly fd: number, chunkBytes = 1024 * 1024) {
    this.buffer = Buffer.allocUnsafe(chunkBytes)
  }

  /** Appends one line: its id and its JSON bytes. */
  add (id: string, doc: Uint8Array): void {
    const idBytes = Buffer.byteLength(id)
    const need = HEADER + idBytes + doc.length
    if (this.used + need > this.buffer.length) this.flush()
    if (need > this.buffer.length) this.buffer = Buffer.allocUnsafe(need)
    this.buffer.writeUInt32LE(idBytes, this.used)
    this.buffer.writeUInt32LE(doc.length, this.used + 4)
    this.buffer.write(id, this.used + HEADER, 'utf8')
    this.buffer.set(doc, this.used + HEADER + idBytes)
    this.used += need
  }

  /** Writes out what is buffered. */
  flush (): void {
    let off = 0
    while (off < this.used) off += writeSync(this.fd, this.buffer, off, this.used - off)
    this.used = 0
  }
}

/**
 * The frames of a stage file in order, as (id, doc). `doc` is a view of a reused buffer,
 * valid until the next frame is read.
 */
export function * readStage (fd: number, chunkBytes = 1024 * 1024): Generator<[string, Buffer]> {
  let buffer = Buffer.allocUnsafe(chunkBytes)
  let start = 0
  let end = 0
  let eof = false
  /** Makes `n` bytes from `start` available, reading more; false at the end of the file. */
  const have = (n: number): boolean => {
    if (end - start >= n) return true
    if (eof) {
      if (end > start) throw new Error('the stage file ends inside a frame')
      return false
    }
    if (n > buffer.length) {
      const bigger = Buffer.allocUnsafe(n)
      buffer.copy(bigger, 0, start, end)
      buffer = bigger
    } else {
      buffer.copy(buffer, 0, start, end)
    }
    end -= start
    start = 0
    while (end < n) {
      const got = readSync(fd, buffer, end, buffer.length - end, null)
      if (got === 0) {
        eof = true
        if (end > 0) throw new Error('the stage file ends inside a frame')
        return false
      }
      end += got
    }
    return true
  }
  while (have(HEADER)) {
    const idBytes = buffer.readUInt32LE(start)
    const docBytes = buffer.readUInt32LE(start + 4)
    if (!have(HEADER + idBytes + docBytes)) throw new Error('the stage file ends inside a frame')
    const id = buffer.toString('utf8', start + HEADER, start + HEADER + idBytes)
    const doc = buffer.subarray(start + HEADER + idBytes, start + HEADER + idBytes + docBytes)
    start += HEADER + idBytes + docBytes
    yield [id, doc]
  }
}
