import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from '../errors.js'

/** Names clients reach for (from other bulk APIs) and the field they mean here. */
const ALIASES: Record<string, string> = {
  next_cursor: 'cursor',
  nextCursor: 'cursor',
  next: 'cursor',
  after: 'cursor',
  page_token: 'cursor',
  pageToken: 'cursor',
  continuation: 'cursor',
  page_size: 'limit',
  pageSize: 'limit',
  per_page: 'limit',
  firm_id: 'firmId',
  object_type: 'objectType',
  type: 'objectType',
  state: 'status',
}

function distance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1))
      diagonal = above
    }
  }
  return row[b.length]
}

/** The known field a misnamed one most likely meant, if any is close enough. */
export function suggestField (name: string, known: string[]): string | undefined {
  const alias = ALIASES[name]
  if (alias !== undefined && known.includes(alias)) return alias
  const folded = name.toLowerCase().replaceAll(/[_-]/g, '')
  let best: { field: string, d: number } | undefined
  for (const field of known) {
    const d = distance(folded, field.toLowerCase())
    if (d <= Math.max(1, Math.floor(field.length / 3)) && (!best || d < best.d)) best = { field, d }
  }
  return best?.field
}

/** The property names a route's schema declares for one part of the request. */
export function schemaFields (request: FastifyRequest, part: 'body' | 'querystring'): string[] {
  const schema = request.routeOptions.schema?.[part] as { properties?: Record<string, unknown> } | undefined
  return Object.keys(schema?.properties ?? {})
}

/**
 * Unknown query parameters of the API's operations are refused, never ignored: a
 * `?cursor=` the route does not read would silently export page 1 again. The answer names the parameter and what was
 * probably meant (a body field, or another parameter).
 */
export default fp(async function fieldHintsPlugin (app: FastifyInstance) {
  app.addHook('preValidation', async (request) => {
    // The API's operations (user and admin); not probes, docs or signed downloads.
    const security = request.routeOptions.config?.security
    if (security !== 'userToken' && security !== 'adminToken') return
    const query = request.query as Record<string, unknown> | undefined
    const unknown = Object.keys(query ?? {}).filter((name) => !schemaFields(request, 'querystring').includes(name))
    if (unknown.length === 0) return
    const known = schemaFields(request, 'querystring')
    const body = schemaFields(request, 'body')
    const errors = unknown.map((name) => {
      const inBody = suggestField(name, body)
      const other = suggestField(name, known)
      const suggestion = inBody !== undefined ? `body/${inBody}` : other
      return { field: `query/${name}`, message: 'is not a query parameter of this operation', ...(suggestion === undefined ? {} : { suggestion }) }
    })
    const [first] = errors
    const name = first.field.slice('query/'.length)
    const detail = first.suggestion?.startsWith('body/')
      ? `query parameter '${name}' is not taken here: send it in the JSON body, {"${first.suggestion.slice(5)}": "…"}, with Content-Type: application/json`
      : `query parameter '${name}' is not taken here${first.suggestion ? `; did you mean '${first.suggestion}'?` : known.length ? `; this operation takes ${known.join(', ')}` : '; this operation takes no query parameters'}`
    throw new AppError('VALIDATION_FAILED', detail, { errors })
  })
}, { name: 'field-hints' })
