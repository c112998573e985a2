import type { firms, tokens, users } from './schema.js'

type Firm = typeof firms.$inferSelect
type User = typeof users.$inferSelect
type Token = typeof tokens.$inferSelect

/** Firms, users, their memberships and tokens. */
export interface AdminStore {
  /** Inserts a firm; false when one with that id exists (nothing changed). */
  insertFirm: (firm: Firm) => Promise<boolean>
  findFirm: (id: string) => Promise<Firm | undefined>
  renameFirm: (id: string, name: string) => Promise<Firm | undefined>
  /** The ids among `ids` that name existing firms. */
  findFirmIds: (ids: string[]) => Promise<string[]>
  /** Inserts a user with its memberships. */
  insertUser: (user: User, firmIds: string[]) => Promise<void>
  findUser: (id: string) => Promise<User | undefined>
  /** The firm ids a user belongs to. */
  selectUserFirmIds: (userId: string) => Promise<string[]>
  insertToken: (token: typeof tokens.$inferInsert) => Promise<void>
  /** A user's tokens, oldest first. */
  selectTokensOfUser: (userId: string) => Promise<Token[]>
  /** Marks a token revoked (the first time only); false when the user has no such token. */
  markTokenRevoked: (userId: string, tokenId: string, now: number) => Promise<boolean>
  /** The live (not revoked) token with this hash. */
  findLiveTokenByHash: (hash: string) => Promise<Token | undefined>
}
