import { and, asc, eq, inArray, isNull, sql } from 'drizzle-orm'
import type { Db } from './db.js'
import { firms, memberships, tokens, users } from './schema.js'

export type FirmRow = typeof firms.$inferSelect
export type TokenRow = typeof tokens.$inferSelect

/** Inserts the firm or renames it; tells which happened. */
export function upsertFirm (db: Db, id: string, name: string | undefined, now: number): { firm: FirmRow, created: boolean } {
  const existing = db.select().from(firms).where(eq(firms.id, id)).get()
  if (existing) {
    if (name === undefined || name === existing.name) return { firm: existing, created: false }
    const firm = db.update(firms).set({ name }).where(eq(firms.id, id)).returning().get()
    return { firm, created: false }
  }
  const firm = db.insert(firms).values({ id, name: name ?? id, createdAt: now }).returning().get()
  return { firm, created: true }
}

/** The ids among `ids` that name existing firms. */
export function findFirmIds (db: Db, ids: string[]): string[] {
  if (ids.length === 0) return []
  return db.select({ id: firms.id }).from(firms).where(inArray(firms.id, ids)).all().map((r) => r.id)
}

/** Inserts a user with its memberships. */
export function insertUser (db: Db, user: { id: string, name: string, createdAt: number }, firmIds: string[]): void {
  db.insert(users).values(user).run()
  if (firmIds.length) db.insert(memberships).values(firmIds.map((firmId) => ({ userId: user.id, firmId }))).run()
}

export function findUser (db: Db, id: string): { id: string, name: string } | undefined {
  return db.select({ id: users.id, name: users.name }).from(users).where(eq(users.id, id)).get()
}

// The two queries behind every authenticated request, prepared once per connection.
const authQueries = new WeakMap<Db, ReturnType<typeof prepareAuthQueries>>()
function prepareAuthQueries (db: Db) {
  return {
    firmIds: db.select({ firmId: memberships.firmId }).from(memberships)
      .where(eq(memberships.userId, sql.placeholder('userId'))).prepare(),
    liveToken: db.select().from(tokens)
      .where(and(eq(tokens.hash, sql.placeholder('hash')), isNull(tokens.revokedAt))).prepare(),
  }
}
function auth (db: Db) {
  let q = authQueries.get(db)
  if (!q) {
    q = prepareAuthQueries(db)
    authQueries.set(db, q)
  }
  return q
}

/** The firm ids a user belongs to. */
export function selectUserFirmIds (db: Db, userId: string): string[] {
  return auth(db).firmIds.all({ userId }).map((r) => r.firmId)
}

export function insertToken (db: Db, token: typeof tokens.$inferInsert): void {
  db.insert(tokens).values(token).run()
}

export function selectTokensOfUser (db: Db, userId: string): TokenRow[] {
  return db.select().from(tokens).where(eq(tokens.userId, userId)).orderBy(asc(tokens.createdAt), asc(tokens.id)).all()
}

/** Marks a token revoked (once); false when the user has no such token. */
export function markTokenRevoked (db: Db, userId: string, tokenId: string, now: number): boolean {
  const row = db.select({ id: tokens.id }).from(tokens).where(and(eq(tokens.id, tokenId), eq(tokens.userId, userId))).get()
  if (!row) return false
  db.update(tokens).set({ revokedAt: now }).where(and(eq(tokens.id, tokenId), isNull(tokens.revokedAt))).run()
  return true
}

/** The live (not revoked) token with this hash. */
export function findLiveTokenByHash (db: Db, hash: string): TokenRow | undefined {
  return auth(db).liveToken.get({ hash })
}
