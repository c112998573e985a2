import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { operations } from '../contract/generated.js'

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
      const fileName = await files.resolveDownload(requestId, request.query.expires, request.query.sig)
      reply.header('Content-Type', 'application/x-ndjson')
      reply.header('Content-Disposition', `attachment; filename="${fileName}"`)
      reply.header('Cache-Control', 'private, no-cache')
      return files.send(reply, fileName)
    },
  })
}
