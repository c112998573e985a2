import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { operations } from '../contract/generated.js'
import { baseUrl } from '../plugins/request-hooks.js'

/** `bytes=` and byte ranges of digits only (RFC 9110 §14.1.2): `1e3-` and `0x10-` are not ranges. */
const BYTE_RANGES = /^bytes=\s*(?:\d+-\d*|-\d+)(?:\s*,\s*(?:\d+-\d*|-\d+))*\s*$/i

/** Whether every `first-last` of a syntactically valid set has first ≤ last (else the set is invalid). */
function ordered (range: string): boolean {
  return range.slice(range.indexOf('=') + 1).split(',').every((part) => {
    const [first, last] = part.trim().split('-')
    return first === '' || last === '' || Number(first) <= Number(last)
  })
}

/**
 * Makes the Range header say what RFC 9110 means before the file is sent: a header that
 * is not a valid byte-range set (`1e3-`, `5-2`) is ignored (the whole file, 200), and a suffix range
 * longer than the file stands for the whole file (206 of all of it), not a 416.
 */
function normalizeRange (request: FastifyRequest, bytes: number): void {
  const range = request.raw.headers.range
  if (range === undefined) return
  // An empty file has no byte to range over: it is sent whole (and empty), not a 416.
  if (bytes === 0 || !BYTE_RANGES.test(range) || !ordered(range)) {
    delete request.raw.headers.range
    return
  }
  const suffix = /^bytes=\s*-(\d+)\s*$/i.exec(range)
  if (suffix && Number(suffix[1]) > bytes) request.raw.headers.range = 'bytes=0-'
}

/** Downloads of export files through their signed links (no token: the signature is the credential). */
export default async function filesRoutes (fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const files = app.services.files

  app.route({
    ...operations.downloadFile,
    // gzip at level 1: export files compress ~3.5:1 and level 6 costs 1.5x more CPU for
    // little gain (measured on this machine). Ranges are never compressed (offsets are of
    // the file). A route's `compress` replaces the plugin's options wholesale (defaults
    // included), and the default types leave out application/x-ndjson.
    compress: { encodings: ['gzip'], zlibOptions: { level: 1 }, customTypes: /^application\/x-ndjson$/ },
    handler: async (request, reply) => {
      const { requestId } = request.params
      const base = baseUrl(request)
      const { fileName, bytes } = await files.resolveDownload(requestId, request.query.expires, request.query.sig, base)
      normalizeRange(request, bytes)
      reply.header('Content-Type', 'application/x-ndjson')
      reply.header('Content-Disposition', `attachment; filename="${fileName}"`)
      reply.header('Cache-Control', 'private, no-cache')
      // Whether the body is gzip depends on Accept-Encoding, whatever the answer turns out to be.
      reply.header('Vary', 'Accept-Encoding')
      try {
        return await files.send(reply, requestId, fileName, base)
      } catch (err) {
        // A problem (a 410, 412, 416) is not the file: a browser must not save it as one.
        reply.removeHeader('Content-Disposition')
        throw err
      }
    },
    // A 304 has no body: none goes on to be gzip-encoded (and labelled so).
    onSend: async (_request, reply, payload) => reply.statusCode === 304 ? '' : payload,
  })
}
