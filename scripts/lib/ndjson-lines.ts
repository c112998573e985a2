/** Reading exported NDJSON files line by line, as the soak and the black-box check verify them. */

/** Splits a byte stream into lines at '\n', without decoding it. */
export class LineSplitter {
  private rest: Buffer | null = null

  constructor (private readonly onLine: (line: Buffer) => void) {}

  push (chunk: Buffer): void {
    let pos = 0
    for (;;) {
      const nl = chunk.indexOf(0x0a, pos)
      if (nl === -1) break
      const piece = chunk.subarray(pos, nl)
      this.onLine(this.rest ? Buffer.concat([this.rest, piece]) : piece)
      this.rest = null
      pos = nl + 1
    }
    // Copied: the rest must outlive a chunk its producer may reuse.
    if (pos < chunk.length) this.rest = this.rest ? Buffer.concat([this.rest, chunk.subarray(pos)]) : Buffer.from(chunk.subarray(pos))
  }

  /** The stream has ended: what followed its last '\n' (null when it ended with one). */
  end (): Buffer | null {
    const rest = this.rest
    this.rest = null
    return rest
  }
}

const ID_PREFIX = '{"id":"'

/**
 * The `id` of one exported line. The server writes `{"id":"…"` first, so that is read
 * without parsing the line (millions of lines); anything else is parsed. Undefined when
 * the line has no string id.
 */
export function lineId (line: Buffer): string | undefined {
  if (line.length > 8 && line[0] === 0x7b && line.subarray(0, 7).toString('latin1') === ID_PREFIX) {
    const q = line.indexOf(0x22, 7)
    // An escaped id would be read raw: leave it to the parser.
    if (q > 7 && !line.subarray(7, q).includes(0x5c)) return line.subarray(7, q).toString('utf8')
  }
  try {
    const id = (JSON.parse(line.toString('utf8')) as { id?: unknown }).id
    return typeof id === 'string' ? id : undefined
  } catch {
    return undefined
  }
}

/** Checks that ids strictly increase as UTF-8 bytes, the order of SQLite's BINARY collation. */
export class IdOrder {
  private prev: Buffer | null = null

  /** The last id taken, if any. */
  get previous (): string | undefined { return this.prev?.toString('utf8') }

  /** Takes the next id; false when it does not come after the one before. */
  next (id: string): boolean {
    const bytes = Buffer.from(id, 'utf8')
    const ok = this.prev === null || Buffer.compare(this.prev, bytes) < 0
    this.prev = bytes
    return ok
  }
}
