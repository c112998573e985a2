/**
 * The admin API calls a benchmark or the soak makes to get a firm, users and their
 * tokens. Setup, not a check: any answer but the documented success throws.
 */
import { fetchJson, type JsonReply } from './http.js'

function fail (what: string, reply: JsonReply): never {
  throw new Error(`${what}: ${reply.status} ${reply.text.slice(0, 300)}`)
}

/** The admin API of the server at `base`, authenticated with `adminToken`. */
export function adminClient (base: URL, adminToken: string): {
  putFirm: (firmId: string, name?: string) => Promise<void>
  createUser: (name: string, firms: string[]) => Promise<{ userId: string, token: string }>
  issueToken: (userId: string) => Promise<string>
} {
  const call = (method: string, path: string, body?: unknown): Promise<JsonReply> =>
    fetchJson(new URL(path, base), { method, token: adminToken, body })
  return {
    /** Creates the firm, or renames it when it exists (200 or 201). */
    putFirm: async (firmId, name) => {
      const reply = await call('PUT', `/api/v1/admin/firms/${firmId}`, name === undefined ? undefined : { name })
      if (reply.status !== 201 && reply.status !== 200) fail('putFirm', reply)
    },
    /** A new user of `firms` and its first token. */
    createUser: async (name, firms) => {
      const reply = await call('POST', '/api/v1/admin/users', { name, firms })
      if (reply.status !== 201 || typeof reply.json?.userId !== 'string' || typeof reply.json?.token !== 'string') fail('createUser', reply)
      return { userId: reply.json.userId, token: reply.json.token }
    },
    /** Another token of the user. */
    issueToken: async (userId) => {
      const reply = await call('POST', `/api/v1/admin/users/${userId}/tokens`)
      if (reply.status !== 201 || typeof reply.json?.token !== 'string') fail('createUserToken', reply)
      return reply.json.token
    },
  }
}
