import { AppError } from '../errors.js'

/** Who is calling: a user authenticated by one of its tokens. */
export interface Principal {
  readonly userId: string
  readonly tokenId: string
  readonly firms: ReadonlySet<string>
}

/** Throws 403 unless the user belongs to the firm. */
export function requireFirmAccess (principal: Principal, firmId: string): void {
  if (!principal.firms.has(firmId)) throw new AppError('FORBIDDEN', `you are not a member of firm '${firmId}'`)
}
