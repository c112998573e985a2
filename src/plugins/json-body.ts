import type { FastifyBodyParser, FastifyInstance, FastifyRequest } from 'fastify'
import { decodeUtf8Body } from '../services/ndjson.js'

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
