import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { AppError } from '../errors.js'
import * as adminStore from '../store/admin-store.js'
import type { Store } from '../store/db.js'
import type { Principal } from './access.js'

const TOKEN_PREFIX = 'bes_'

/** SHA-256 of a token, hex: what the database keeps instead of the token. */
export function hashToken (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/** Compares two secrets in time that does not depend on where they differ. */
export function secretsEqual (a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest()
  const hb = createHash('sha256').update(b).digest()
  return timingSafeEqual(ha, hb)
}

/**
 * A name SQLite stores as UTF-8 must be well-formed: a lone surrogate would come back as
 * replacement characters, a silent change of what the client sent.
 */
function requireWellFormedName (name: string | undefined): void {
  if (name !== undefined && !name.isWellFormed()) {
    throw new AppError('VALIDATION_FAILED', 'the name must be well-formed Unicode text (it holds a lone surrogate)')
  }
}

function iso (ms: number): string {
  return new Date(ms).toISOString()
}

export function createAdminService ({ db, sqlite }: Store, now = Date.now) {
  function newToken (userId: string): { tokenId: string, token: string } {
    // 256 random bits; the token is returned once and only its hash is stored.
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url')
    const tokenId = `token-${randomUUID()}`
    adminStore.insertToken(db, { id: tokenId, userId, hash: hashToken(token), prefix: token.slice(0, 10), createdAt: now() })
    return { tokenId, token }
  }

  function requireUser (userId: string): void {
    if (!adminStore.findUser(db, userId)) throw new AppError('NOT_FOUND', `no user '${userId}'`)
  }

  return {
    putFirm (firmId: string, name: string | undefined) {
      requireWellFormedName(name)
      const { firm, created } = adminStore.upsertFirm(db, firmId, name, now())
      return { created, firm: { firmId: firm.id, name: firm.name, createdAt: iso(firm.createdAt) } }
    },

    // IMMEDIATE transactions: one that reads before it writes gets SQLITE_BUSY at once,
    // without waiting (busy_timeout), when another connection holds the write lock.
    createUser: (name: string, firms: string[]) => sqlite.transaction(() => {
      requireWellFormedName(name)
      const known = new Set(adminStore.findFirmIds(db, firms))
      const missing = firms.filter((f) => !known.has(f))
      if (missing.length) {
        throw new AppError('VALIDATION_FAILED', `unknown firm(s): ${missing.join(', ')}; create them first with PUT /api/v1/admin/firms/{firmId}`)
      }
      const userId = `user-${randomUUID()}`
      adminStore.insertUser(db, { id: userId, name, createdAt: now() }, firms)
      return { userId, name, firms, ...newToken(userId) }
    }).immediate(),

    issueToken: (userId: string) => sqlite.transaction(() => {
      requireUser(userId)
      return newToken(userId)
    }).immediate(),

    listTokens (userId: string) {
      requireUser(userId)
      return adminStore.selectTokensOfUser(db, userId).map((t) => ({
        tokenId: t.id,
        prefix: t.prefix,
        createdAt: iso(t.createdAt),
        revokedAt: t.revokedAt === null ? null : iso(t.revokedAt),
      }))
    },

    revokeToken (userId: string, tokenId: string): void {
      requireUser(userId)
      if (!adminStore.markTokenRevoked(db, userId, tokenId, now())) {
        throw new AppError('NOT_FOUND', `user '${userId}' has no token '${tokenId}'`)
      }
    },

    /** The principal a bearer token stands for, or undefined when unknown or revoked. */
    authenticate (token: string): Principal | undefined {
      if (!token.startsWith(TOKEN_PREFIX) || token.length > 200) return undefined
      const hash = hashToken(token)
      const row = adminStore.findLiveTokenByHash(db, hash)
      if (!row || !timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash))) return undefined
      return { userId: row.userId, tokenId: row.id, firms: new Set(adminStore.selectUserFirmIds(db, row.userId)) }
    },
  }
}

export type AdminService = ReturnType<typeof createAdminService>
