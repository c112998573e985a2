import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { CreatedToken, CreatedUser, Firm, TokenInfo } from '../contract/generated.js'
import { AppError } from '../errors.js'
import type { AdminStore } from '../store/admin-store.js'
import type { Store } from '../store/store.js'
import type { Principal } from './access.js'

const TOKEN_PREFIX = 'bes_'

/** SHA-256 of a token, hex: what the database keeps instead of the token. */
function hashToken (token: string): string {
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

function firmView (row: { id: string, name: string, createdAt: number }): Firm {
  return { firmId: row.id, name: row.name, createdAt: iso(row.createdAt) }
}

/**
 * How long a token's principal is reused without reading the database again. A token
 * revoked through this process stops working at once (the cache is dropped); revoked by
 * another process sharing the database, within this time.
 */
const PRINCIPAL_TTL_MS = 1000
const PRINCIPAL_CACHE_MAX = 10_000

/** Firms, users and their tokens (the admin API), and who a bearer token stands for. */
export function createAdminService (store: Store, now = Date.now) {
  // By bearer token (never written anywhere): the principal it stood for, and until when that holds.
  const principals = new Map<string, { token: Buffer, principal: Principal, until: number }>()

  async function newToken (admin: AdminStore, userId: string): Promise<CreatedToken> {
    // 256 random bits; the token is returned once and only its hash is stored.
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url')
    const tokenId = `token-${randomUUID()}`
    await admin.insertToken({ id: tokenId, userId, hash: hashToken(token), prefix: token.slice(0, 10), createdAt: now() })
    return { tokenId, token }
  }

  async function requireUser (admin: AdminStore, userId: string): Promise<void> {
    if (!await admin.findUser(userId)) throw new AppError('NOT_FOUND', `no user '${userId}'`)
  }

  return {
    /** Creates the firm, or renames it when a name is given; tells which. */
    putFirm: async (firmId: string, name: string | undefined): Promise<{ created: boolean, firm: Firm }> => {
      requireWellFormedName(name)
      // A repeated PUT changes nothing and takes no write lock.
      const current = await store.admin.findFirm(firmId)
      if (current && (name === undefined || name === current.name)) {
        return { created: false, firm: firmView(current) }
      }
      const { created, row } = await store.transaction(async (tx) => {
        const fresh = { id: firmId, name: name ?? firmId, createdAt: now() }
        if (await tx.admin.insertFirm(fresh)) return { created: true, row: fresh }
        const existing = await tx.admin.findFirm(firmId)
        if (!existing) throw new Error(`firm ${firmId} neither inserted nor found`)
        const renamed = name !== undefined && name !== existing.name ? await tx.admin.renameFirm(firmId, name) : undefined
        return { created: false, row: renamed ?? existing }
      })
      return { created, firm: firmView(row) }
    },

    createUser: (name: string, firms: string[]): Promise<CreatedUser> => {
      requireWellFormedName(name)
      return store.transaction(async (tx) => {
        const known = new Set(await tx.admin.findFirmIds(firms))
        const missing = firms.filter((f) => !known.has(f))
        if (missing.length) {
          throw new AppError('VALIDATION_FAILED', `unknown firm(s): ${missing.join(', ')}; create them first with PUT /api/v1/admin/firms/{firmId}`)
        }
        const userId = `user-${randomUUID()}`
        await tx.admin.insertUser({ id: userId, name, createdAt: now() }, firms)
        return { userId, name, firms, ...await newToken(tx.admin, userId) }
      })
    },

    issueToken: (userId: string): Promise<CreatedToken> => store.transaction(async (tx) => {
      await requireUser(tx.admin, userId)
      return newToken(tx.admin, userId)
    }),

    listTokens: async (userId: string): Promise<TokenInfo[]> => {
      await requireUser(store.admin, userId)
      return (await store.admin.selectTokensOfUser(userId)).map((t) => ({
        tokenId: t.id,
        prefix: t.prefix,
        createdAt: iso(t.createdAt),
        revokedAt: t.revokedAt === null ? null : iso(t.revokedAt),
      }))
    },

    revokeToken: async (userId: string, tokenId: string): Promise<void> => {
      await requireUser(store.admin, userId)
      const revoked = await store.admin.markTokenRevoked(userId, tokenId, now())
      principals.clear()
      if (!revoked) throw new AppError('NOT_FOUND', `user '${userId}' has no token '${tokenId}'`)
    },

    /** The principal a bearer token stands for, or undefined when unknown or revoked. */
    authenticate: async (token: string): Promise<Principal | undefined> => {
      if (!token.startsWith(TOKEN_PREFIX) || token.length > 200) return undefined
      const at = performance.now()
      // Keyed by the token itself, in this process's memory only: a hit costs no hash, and
      // is confirmed in constant time like a database hit, so both paths look alike.
      const cached = principals.get(token)
      if (cached && cached.until > at && timingSafeEqual(cached.token, Buffer.from(token))) return cached.principal
      const hash = hashToken(token)
      const row = await store.admin.findLiveTokenByHash(hash)
      if (!row || !timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash))) return undefined
      const principal = { userId: row.userId, tokenId: row.id, firms: new Set(await store.admin.selectUserFirmIds(row.userId)) }
      if (principals.size >= PRINCIPAL_CACHE_MAX) principals.clear()
      principals.set(token, { token: Buffer.from(token), principal, until: at + PRINCIPAL_TTL_MS })
      return principal
    },
  }
}

export type AdminService = ReturnType<typeof createAdminService>
