import { and, asc, eq, inArray, isNull, sql } from 'drizzle-orm'
import type { AdminStore } from '../admin-store.js'
import { firms, memberships, tokens, users } from '../schema.js'
import type { Db, Run } from './connection.js'

/** Statements prepared once per connection: the two behind every authenticated request. */
export function prepareAdminQueries (db: Db) {
  return {
    firmIdsOfUser: db.select({ firmId: memberships.firmId }).from(memberships)
      .where(eq(memberships.userId, sql.placeholder('userId'))).prepare(),
    liveTokenByHash: db.select().from(tokens)
      .where(and(eq(tokens.hash, sql.placeholder('hash')), isNull(tokens.revokedAt))).prepare(),
  }
}

/** The admin store on SQLite; `run` decides when each call may touch the connection. */
export function createAdminStore (db: Db, q: ReturnType<typeof prepareAdminQueries>, run: Run): AdminStore {
  return {
    insertFirm: (firm) => run(() => db.insert(firms).values(firm).onConflictDoNothing().run().changes > 0),
    findFirm: (id) => run(() => db.select().from(firms).where(eq(firms.id, id)).get()),
    renameFirm: (id, name) => run(() => db.update(firms).set({ name }).where(eq(firms.id, id)).returning().get()),
    findFirmIds: (ids) => run(() => ids.length === 0
      ? []
      : db.select({ id: firms.id }).from(firms).where(inArray(firms.id, ids)).all().map((r) => r.id)),
    insertUser: (user, firmIds) => run(() => {
      // One operation: the better-sqlite3 transaction becomes a savepoint inside an open one.
      db.transaction((t) => {
        t.insert(users).values(user).run()
        if (firmIds.length) t.insert(memberships).values(firmIds.map((firmId) => ({ userId: user.id, firmId }))).run()
      })
    }),
    findUser: (id) => run(() => db.select().from(users).where(eq(users.id, id)).get()),
    selectUserFirmIds: (userId) => run(() => q.firmIdsOfUser.all({ userId }).map((r) => r.firmId)),
    insertToken: (token) => run(() => { db.insert(tokens).values(token).run() }),
    selectTokensOfUser: (userId) => run(() =>
      db.select().from(tokens).where(eq(tokens.userId, userId)).orderBy(asc(tokens.createdAt), asc(tokens.id)).all()),
    markTokenRevoked: (userId, tokenId, now) => run(() => db.update(tokens)
      .set({ revokedAt: sql`coalesce(${tokens.revokedAt}, ${now})` })
      .where(and(eq(tokens.id, tokenId), eq(tokens.userId, userId)))
      .run().changes > 0),
    findLiveTokenByHash: (hash) => run(() => q.liveTokenByHash.get({ hash })),
  }
}
