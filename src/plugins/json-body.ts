import type { FastifyBodyParser, FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { decodeUtf8Body } from '../services/ndjson.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The operation's JSON body is optional: a missing one validates as `{}`. */
    optionalBody?: boolean
    /** The Content-Types the operation's body may have (from the spec). */
    bodyTypes?: readonly string[]
  }
}

/**
 * The application/json parser every JSON operation uses: strict UTF-8 (invalid bytes are
 * a 400, never U+FFFD), an empty body is no body (curl -X POST -H 'Content-Type: …'), and
 * otherwise Fastify's own safe parser. `keepText` receives the text of a parsed body.
 */
export function jsonBodyParser (instance: FastifyInstance, keepText?: (request: FastifyRequest, text: string) => void): FastifyBodyParser<Buffer> {
  const parseJson = instance.getDefaultJsonParser('error', 'error')
  return (request, raw, done) => {
    let text: string
    try {
      text = decodeUtf8Body(raw)
    } catch (err) {
      return done(err as Error, undefined)
    }
    if (text.trim() === '') return done(null, undefined)
    parseJson(request, text, (err, value) => {
      if (!err && keepText) keepText(request, text)
      done(err, value)
    })
  }
}

/** JSON bodies: the strict parser above, nothing but JSON, and optional bodies as `{}`. */
export default fp(async function jsonBodyPlugin (app: FastifyInstance) {
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBodyParser(app))
  // JSON operations take JSON only: a text/plain body is a 415, not a string failing the schema.
  app.removeContentTypeParser('text/plain')
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && request.routeOptions.config?.optionalBody) request.body = {}
  })
}, { name: 'json-body' })
