import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Readable } from 'node:stream'
import { operations, type StoredObject } from '../contract/generated.js'
import { AppError } from '../errors.js'
import { principalOf } from '../plugins/auth.js'
import { requireFirmAccess } from '../services/access.js'
import { jsonBodyParser } from '../plugins/json-body.js'

/**
 * Objects are sent as their stored bytes, never re-serialized, so what comes back is what
 * went in; the cast tells the type provider these bytes are a StoredObject.
 */
function asStored (doc: Buffer): StoredObject {
  return doc as unknown as StoredObject
}

/** Import (NDJSON) and one-object CRUD. */
export default async function objectsRoutes (fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const objects = app.services.objects
  const { objectMaxBytes, importMaxBytes } = app.config

  // The import body is NDJSON and nothing else, handed over as a stream (never buffered).
  await app.register(async function importScope (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser(['application/x-ndjson', 'application/jsonl'], (_request, payload, done) => done(null, payload))
    scope.withTypeProvider<TypeBoxTypeProvider>().route({
      ...operations.importObjects,
      handler: async (request, reply) => {
        const { firmId, objectType } = request.params
        requireFirmAccess(principalOf(request), firmId)
        const declared = Number(request.headers['content-length'])
        if (declared > importMaxBytes) {
          throw new AppError('PAYLOAD_TOO_LARGE', `the request body is larger than ${importMaxBytes} bytes (IMPORT_MAX_BYTES)`)
        }
        const body = request.body as Readable | undefined
        if (!body) throw new AppError('VALIDATION_FAILED', 'the body is empty; send one JSON object per line')
        try {
          // Stopping early must not destroy the request (and with it the socket the
          // problem is to be sent on).
          return await objects.importNdjson(firmId, objectType, body.iterator({ destroyOnReturn: false }))
        } catch (err) {
          // The client went away mid-body: its own doing, answered (to no one) as a 400.
          if (!(err instanceof AppError) && (request.raw.aborted || (err as NodeJS.ErrnoException).code === 'ECONNRESET')) {
            throw new AppError('VALIDATION_FAILED', 'the client closed the connection before the body ended; nothing was imported')
          }
          // Drain the rest of the body so a client that sends it all before reading gets
          // the problem rather than a reset; past the body limit, hang up instead.
          if (err instanceof AppError && err.code === 'PAYLOAD_TOO_LARGE') reply.header('Connection', 'close')
          else body.resume()
          throw err
        }
      },
    })
  })

  app.route({
    ...operations.listCollections,
    handler: async (request) => {
      const { firmId } = request.params
      requireFirmAccess(principalOf(request), firmId)
      return { firmId, collections: await objects.listCollections(firmId) }
    },
  })

  app.route({
    ...operations.getObject,
    handler: async (request, reply) => {
      const { firmId, objectType, objectId } = request.params
      requireFirmAccess(principalOf(request), firmId)
      return reply.type('application/json; charset=utf-8').send(asStored(await objects.getObject(firmId, objectType, objectId)))
    },
  })

  // PUT keeps the body's JSON text, so the object is stored as sent (only compacted).
  await app.register(async function putScope (scope) {
    const bodyText = new WeakMap<object, string>()
    scope.removeContentTypeParser('application/json')
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBodyParser(scope, (request, text) => bodyText.set(request, text)))
    scope.withTypeProvider<TypeBoxTypeProvider>().route({
      ...operations.putObject,
      // Room for a pretty-printed body whose compact form is within the object limit.
      bodyLimit: objectMaxBytes * 2 + 65536,
      handler: async (request, reply) => {
        const { firmId, objectType, objectId } = request.params
        requireFirmAccess(principalOf(request), firmId)
        const { created, doc } = await objects.putObject(firmId, objectType, objectId, request.body, bodyText.get(request))
        return reply.code(created ? 201 : 200).type('application/json; charset=utf-8').send(asStored(doc))
      },
    })
  })

  app.route({
    ...operations.deleteObject,
    handler: async (request, reply) => {
      const { firmId, objectType, objectId } = request.params
      requireFirmAccess(principalOf(request), firmId)
      await objects.deleteObject(firmId, objectType, objectId)
      return reply.code(204).send()
    },
  })
}
