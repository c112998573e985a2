import { createHash, type Hash } from 'node:crypto'
import { writeSync } from 'node:fs'

const NEWLINE = 0x0a

/**
 * Writes NDJSON lines to a file descriptor through one reusable buffer (few, large
 * writeSync calls), hashing what it writes. Pure byte handling: no SQLite, no thread.
 */
export class NdjsonWriter {
  private readonly buffer: Buffer
  private used = 0
  private readonly hash: Hash = createHash('sha256')
  bytes = 0
  lines = 0

  constructor (private readonly fd: number, chunkBytes = 1024 * 1024) {
    this.buffer = Buffer.allocUnsafe(chunkBytes)
  }

  /** Appends one document (JSON bytes, no newline) as a line. */
  writeLine (doc: Uint8Array): void {
    const need = doc.length + 1
    if (this.used + need > this.buffer.length) this.flush()
    if (need > this.buffer.length) {
      this.writeOut(doc)
      this.buffer[0] = NEWLINE
      this.used = 1
    } else {
      this.buffer.set(doc, this.used)
      this.buffer[this.used + doc.length] = NEWLINE
      this.used += need
    }
    this.lines++
  }

  /** Appends `lines` whole lines at once (each already ending in a newline). */
  writeLines (bytes: Uint8Array, lines: number): void {
    this.flush()
    this.writeOut(bytes)
    this.lines += lines
  }

  /** Writes out what is buffered. */
  flush (): void {
    if (this.used === 0) return
    this.writeOut(this.buffer.subarray(0, this.used))
    this.used = 0
  }

  /** Flushes and returns the SHA-256 (hex) of everything written. */
  finish (): string {
    this.flush()
    return this.hash.digest('hex')
  }

  private writeOut (bytes: Uint8Array): void {
    this.hash.update(bytes)
    let off = 0
    while (off < bytes.length) off += writeSync(this.fd, bytes, off, bytes.length - off)
    this.bytes += bytes.length
  }
}
