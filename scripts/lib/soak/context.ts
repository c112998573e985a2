/** What the soak's loops share. */
import type { DataSet } from './data-set.js'
import type { Traffic } from './traffic.js'

/** One user of the soak's firm: tokens for its chains and its pollers, and its latest job. */
export interface UserState {
  n: number
  userId: string
  chainTokens: string[]
  pollerTokens: string[]
  /** Round-robin position in chainTokens. */
  next: number
  latest: string | null
}

/** A status read, as far as the soak checks it. */
export interface StatusView {
  requestId: string
  status: 'Pending' | 'InProgress' | 'Completed' | 'Failed'
  progress?: { processed: number, total?: number }
  result?: { total: number, fileUrl: string, nextCursor: string | null, bytes: number, sha256: string }
  error?: { code: string, message: string }
}

/** The settings and state every loop of the soak works with. */
export interface SoakContext {
  base: URL
  firm: string
  type: string
  traffic: Traffic
  data: DataSet
  users: UserState[]
  expectedPages: number
  pollPauseMs: number
  chainPollMs: number
  /** Milliseconds to the deadline (≤ 0 once it has passed). */
  left: () => number
  /** Sleeps `ms`, but not past the deadline. */
  pause: (ms: number) => Promise<void>
}
