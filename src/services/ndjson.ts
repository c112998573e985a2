import { AppError } from '../errors.js'

const NL = 0x0a
// ignoreBOM keeps a U+FEFF in the text, so JSON.parse refuses it: it is not JSON whitespace.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function isBlank (b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0d
}

/** The line without surrounding spaces, tabs and carriage returns (no copy). */
function trimLine (line: Buffer): Buffer {
  let start = 0
  let end = line.length
  while (start < end && isBlank(line[start])) start++
  while (end > start && isBlank(line[end - 1])) end--
  return line.subarray(start, end)
}

/** The body's first line without a UTF-8 byte order mark (a chunk boundary may split one). */
function stripBom (line: Buffer): Buffer {
  return line.length >= 3 && line[0] === 0xef && line[1] === 0xbb && line[2] === 0xbf ? line.subarray(3) : line
}

/**
 * Valid JSON text without its insignificant whitespace (and a leading BOM). Tokens are
 * kept as written, so a number beyond double precision keeps its digits, and the result
 * is one line.
 */
export function compactJson (text: string): string {
  let out = ''
  let from = text.charCodeAt(0) === 0xfeff ? 1 : 0
  let inString = false
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
      out += text.slice(from, i)
      from = i + 1
    }
  }
  return out + text.slice(from)
}

/**
 * A JSON request body's bytes as text. Invalid UTF-8 (the bytes of a lone surrogate
 * included) is a 400, as on an import line, never silently turned into U+FFFD.
 */
export function decodeUtf8Body (bytes: Buffer): string {
  try {
    return decoder.decode(bytes)
  } catch {
    throw new AppError('VALIDATION_FAILED', 'the body is not valid UTF-8')
  }
}

/** Whether an object id can be stored and read back unchanged. */
export function isValidObjectId (id: unknown): id is string {
  // Characters as the spec (JSON Schema maxLength) counts them: code points, not UTF-16 units.
  return typeof id === 'string' && id.length >= 1 && id.length <= 512 && id.isWellFormed() && !id.includes('\u0000') && [...id].length <= 256
}

/**
 * Validates one trimmed, non-empty NDJSON line as an object document and returns its id.
 * Throws AppError naming the 1-based line on any fault.
 */
export function parseObjectLine (line: Buffer, lineNo: number, maxBytes: number): string {
  if (line.length > maxBytes) {
    throw new AppError('OBJECT_TOO_LARGE', `line ${lineNo}: the object is ${line.length} bytes; the limit is ${maxBytes} (OBJECT_MAX_BYTES)`, { line: lineNo })
  }
  let text: string
  try {
    text = decoder.decode(line)
  } catch {
    throw new AppError('VALIDATION_FAILED', `line ${lineNo}: not valid UTF-8`, { line: lineNo })
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new AppError('VALIDATION_FAILED', `line ${lineNo}: not valid JSON (${(err as Error).message})`, { line: lineNo })
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new AppError('VALIDATION_FAILED', `line ${lineNo}: must be a JSON object`, { line: lineNo })
  }
  const id = (value as { id?: unknown }).id
  if (!isValidObjectId(id)) {
    throw new AppError('VALIDATION_FAILED', `line ${lineNo}: "id" must be a string of 1 to 256 well-formed characters without NUL`, { line: lineNo })
  }
  return id
}

export interface NdjsonLimits {
  /** Largest object line (after trimming). */
  maxLineBytes: number
  /** Largest whole body. */
  maxTotalBytes: number
}

/**
 * Splits a byte stream into NDJSON lines, yielding each non-blank line (trimmed) with its
 * 1-based number. Memory holds at most one line plus one chunk: a line that grows past
 * the object limit, or a body past the total limit, throws before more is read.
 */
export async function * readLines (body: AsyncIterable<Buffer>, limits: NdjsonLimits): AsyncGenerator<{ line: Buffer, lineNo: number }> {
  let total = 0
  let lineNo = 0
  let pending: Buffer[] = []
  let pendingBytes = 0
  // Spaces around a line do not count towards the object limit, within reason.
  const maxRaw = limits.maxLineBytes + 4096
  for await (const chunk of body) {
    total += chunk.length
    if (total > limits.maxTotalBytes) {
      throw new AppError('PAYLOAD_TOO_LARGE', `the request body is larger than ${limits.maxTotalBytes} bytes (IMPORT_MAX_BYTES)`)
    }
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(NL, start)
      if (nl === -1) break
      const piece = chunk.subarray(start, nl)
      const raw = pending.length ? Buffer.concat([...pending, piece]) : piece
      pending = []
      pendingBytes = 0
      lineNo++
      const line = trimLine(lineNo === 1 ? stripBom(raw) : raw)
      if (line.length) yield { line, lineNo }
      start = nl + 1
    }
    if (start < chunk.length) {
      pending.push(chunk.subarray(start))
      pendingBytes += chunk.length - start
      if (pendingBytes > maxRaw) {
        throw new AppError('OBJECT_TOO_LARGE', `line ${lineNo + 1}: the object is larger than ${limits.maxLineBytes} bytes (OBJECT_MAX_BYTES)`, { line: lineNo + 1 })
      }
    }
  }
  if (pendingBytes) {
    lineNo++
    const raw = Buffer.concat(pending)
    const line = trimLine(lineNo === 1 ? stripBom(raw) : raw)
    if (line.length) yield { line, lineNo }
  }
}
