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

/**
 * Cursor payload: the page starts after `after` in the (firm, type) collection, and
 * `offset` objects of the chain came before it (unknown in cursors of version c1).
 */
export interface CursorPosition { firmId: string, objectType: string, after: string, offset?: number }

/** Where a page of GET /api/v1/requests ends: the last request shown, for one user and filter. */
export interface ListPosition { userId: string, filter: string, createdAt: number, id: string }

const CURSOR_VERSION = 'c2'
const LIST_VERSION = 'l1'

/**
 * Seals fields (none holds NUL) as `version.payload.mac`: NUL-separated UTF-8 in
 * base64url, not JSON, since JSON spells a control character in six bytes, which pushed
 * the cursor of a 256-character id past the 2048 characters the contract allows.
 */
function seal (key: Buffer, version: string, fields: string[]): string {
  const payload = Buffer.from(fields.join('\0'), 'utf8').toString('base64url')
  return `${version}.${payload}.${mac(key, `${version}.${payload}`).toString('base64url')}`
}

/** The fields of a genuine sealed value of one of `versions`; a reason string otherwise. */
function unseal (key: Buffer, value: unknown, versions: string[]): { version: string, fields: string[] } | string {
  if (typeof value !== 'string' || value.length > 2048) return 'malformed'
  const parts = value.split('.')
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1]) || !SIGNATURE.test(parts[2])) return 'malformed'
  if (!versions.includes(parts[0])) return 'unknown version'
  const expected = mac(key, `${parts[0]}.${parts[1]}`)
  const given = Buffer.from(parts[2], 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad signature'
  return { version: parts[0], fields: Buffer.from(parts[1], 'base64url').toString('utf8').split('\0') }
}

/** How many download-link signatures a signer remembers (then it forgets them all). */
const RECENT_SIGNATURES_MAX = 1000

/**
 * HMAC signing of cursors, list cursors and download URLs, each with its own derived key
 * so a signature made for one purpose is never valid for another.
 */
export function createSigner (secret: string) {
  const cursorKey = mac(Buffer.from(secret), 'bulk-export cursor v1')
  const listKey = mac(Buffer.from(secret), 'bulk-export request list cursor v1')
  const urlKey = mac(Buffer.from(secret), 'bulk-export download url v1')
  /** Download-link signatures made lately, by `requestId.expires`. */
  const recentSignatures = new Map<string, string>()

  function invalidCursor (why: string): AppError {
    return new AppError('INVALID_CURSOR', `the cursor is not valid for this export (${why}); use a nextCursor returned by this server for the same firm and object type, or none to start over`)
  }

  return {
    /** An opaque cursor: version, base64url payload and HMAC, bound to firm and type. */
    encodeCursor: (pos: CursorPosition): string =>
      seal(cursorKey, CURSOR_VERSION, [pos.firmId, pos.objectType, pos.after, String(pos.offset ?? '')]),

    /**
     * Decodes and verifies a cursor for this firm and type; any other input (forged,
     * truncated, foreign, malformed) throws INVALID_CURSOR, never anything else.
     */
    decodeCursor (cursor: string, firmId: string, objectType: string): { after: string, offset?: number } {
      const open = unseal(cursorKey, cursor, ['c1', CURSOR_VERSION])
      if (typeof open === 'string') throw invalidCursor(open)
      const { version, fields } = open
      if (fields.length !== (version === 'c1' ? 3 : 4)) throw invalidCursor('malformed')
      const [f, t, after, offset] = fields
      if (f !== firmId || t !== objectType) throw invalidCursor('it belongs to another firm or object type')
      if (offset === undefined || offset === '') return { after }
      if (!/^\d{1,16}$/.test(offset) || !Number.isSafeInteger(Number(offset))) throw invalidCursor('malformed')
      return { after, offset: Number(offset) }
    },

    /** The opaque cursor of the next page of a request list. */
    encodeListCursor: (pos: ListPosition): string =>
      seal(listKey, LIST_VERSION, [pos.userId, pos.filter, String(pos.createdAt), pos.id]),

    /** The position a list cursor stands for, when it is genuine and of this user and filter. */
    decodeListCursor (cursor: string, userId: string, filter: string): { createdAt: number, id: string } {
      const invalid = (why: string): AppError => new AppError('INVALID_CURSOR',
        `the cursor is not valid for this list (${why}); pass the nextCursor of the previous page with the same filters, or none for the first page`)
      const open = unseal(listKey, cursor, [LIST_VERSION])
      if (typeof open === 'string') throw invalid(open)
      const [user, filterOf, createdAt, id] = open.fields
      if (open.fields.length !== 4 || !/^\d{1,15}$/.test(createdAt)) throw invalid('malformed')
      if (user !== userId || filterOf !== filter) throw invalid('it belongs to another list')
      return { createdAt: Number(createdAt), id }
    },

    /**
     * Signature of a download link: HMAC over request id and expiry (unix seconds). The
     * expiry moves once a second, so a job polled many times a second is signed once.
     */
    signDownload (requestId: string, expires: number): string {
      const data = `${requestId}.${expires}`
      let signature = recentSignatures.get(data)
      if (signature === undefined) {
        signature = mac(urlKey, data).toString('base64url')
        if (recentSignatures.size >= RECENT_SIGNATURES_MAX) recentSignatures.clear()
        recentSignatures.set(data, signature)
      }
      return signature
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
