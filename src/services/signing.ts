import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { AppError } from '../errors.js'

export const SECRET_FILE = 'signing-secret'

/**
 * The secret that signs cursors and download URLs: SIGNING_SECRET when given, else the
 * one kept in DATA_DIR, created (mode 0600) on first start so links survive restarts.
 */
export function loadSigningSecret (dataDir: string, given: string | undefined): string {
  if (given !== undefined) return given
  const path = join(dataDir, SECRET_FILE)
  mkdirSync(dataDir, { recursive: true })
  try {
    return checked(readFileSync(path, 'utf8').trim(), path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  // Written whole to a temporary file, fsynced, then linked into place: a crash never
  // leaves an empty or partial secret behind.
  const secret = randomBytes(32).toString('base64url')
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fd = openSync(tmp, 'wx', 0o600)
  try {
    writeSync(fd, secret + '\n')
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  chmodSync(tmp, 0o600)
  try {
    linkSync(tmp, path)
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return checked(readFileSync(path, 'utf8').trim(), path)
    throw err
  } finally {
    rmSync(tmp, { force: true })
  }
  return secret
}

/** A kept secret too short to sign with is refused, never used. */
function checked (secret: string, path: string): string {
  if (secret.length < 32) {
    throw new Error(`the signing secret in ${path} is shorter than 32 characters; remove the file to have a new one generated (links and cursors signed with the old one stop working)`)
  }
  return secret
}

/**
 * A SHA-256 MAC in canonical base64url: 43 characters whose last carries 4 bits and two
 * zero bits. Decoding ignores those two bits, so without this check three other endings
 * of every genuine signature would be accepted as well.
 */
const SIGNATURE = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/

function mac (key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest()
}

/** Cursor payload: the page starts after `after` in the (firm, type) collection. */
export interface CursorPosition { firmId: string, objectType: string, after: string }

const CURSOR_VERSION = 'c1'

/**
 * HMAC signing of cursors and download URLs, each with its own derived key so a
 * signature made for one purpose is never valid for the other.
 */
export function createSigner (secret: string) {
  const cursorKey = mac(Buffer.from(secret), 'bulk-export cursor v1')
  const urlKey = mac(Buffer.from(secret), 'bulk-export download url v1')

  function invalidCursor (why: string): AppError {
    return new AppError('INVALID_CURSOR', `the cursor is not valid for this export (${why}); use a nextCursor returned by this server for the same firm and object type, or none to start over`)
  }

  return {
    /** An opaque cursor: version, base64url payload and HMAC, bound to firm and type. */
    encodeCursor (pos: CursorPosition): string {
      // NUL-separated UTF-8, not JSON: firm ids, types and object ids never hold NUL, and JSON
      // spells a control character in six bytes, which pushed the cursor of a 256-character
      // id past the 2048 characters the contract allows (maxLength of ExportInput.cursor).
      const payload = Buffer.from(`${pos.firmId}\0${pos.objectType}\0${pos.after}`, 'utf8').toString('base64url')
      const signature = mac(cursorKey, `${CURSOR_VERSION}.${payload}`).toString('base64url')
      return `${CURSOR_VERSION}.${payload}.${signature}`
    },

    /**
     * Decodes and verifies a cursor for this firm and type; any other input (forged,
     * truncated, foreign, malformed) throws INVALID_CURSOR, never anything else.
     */
    decodeCursor (cursor: string, firmId: string, objectType: string): string {
      if (typeof cursor !== 'string' || cursor.length > 2048) throw invalidCursor('malformed')
      const parts = cursor.split('.')
      if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1]) || !SIGNATURE.test(parts[2])) {
        throw invalidCursor('malformed')
      }
      if (parts[0] !== CURSOR_VERSION) throw invalidCursor('unknown version')
      const expected = mac(cursorKey, `${parts[0]}.${parts[1]}`)
      const given = Buffer.from(parts[2], 'base64url')
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalidCursor('bad signature')
      const value = Buffer.from(parts[1], 'base64url').toString('utf8').split('\0')
      if (value.length !== 3) throw invalidCursor('malformed')
      const [f, t, after] = value
      if (f !== firmId || t !== objectType) throw invalidCursor('it belongs to another firm or object type')
      return after
    },

    /** Signature of a download link: HMAC over request id and expiry (unix seconds). */
    signDownload (requestId: string, expires: number): string {
      return mac(urlKey, `${requestId}.${expires}`).toString('base64url')
    },

    /** Whether a download link's signature is genuine (constant time). */
    verifyDownload (requestId: string, expires: string, signature: string): boolean {
      if (!/^\d{1,12}$/.test(expires) || !SIGNATURE.test(signature)) return false
      const expected = mac(urlKey, `${requestId}.${expires}`)
      const given = Buffer.from(signature, 'base64url')
      return given.length === expected.length && timingSafeEqual(given, expected)
    },
  }
}

export type Signer = ReturnType<typeof createSigner>
