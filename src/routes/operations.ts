import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { operations } from '../contract/generated.js'
import { stringify } from 'yaml'
import { AppError } from '../errors.js'

/** Health, readiness and the API description. */
export default async function operationsRoutes (fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()

  app.route({ ...operations.getHealth, handler: async () => ({ status: 'ok' as const }) })

  app.route({
    ...operations.getReadiness,
    handler: async () => {
      if (app.stopping) throw new AppError('SERVICE_UNAVAILABLE', 'the server is shutting down')
      try {
        await app.store.ping()
      } catch {
        throw new AppError('SERVICE_UNAVAILABLE', 'the database does not answer')
      }
      return { status: 'ready' as const }
    },
  })

  // The spec names the host it was asked for (its servers), so no cache may keep it.
  app.route({
    ...operations.getOpenApiJson,
    handler: async (request, reply) => reply.header('Cache-Control', 'no-store').send(app.specFor(request)),
  })

  app.route({
    ...operations.getOpenApiYaml,
    handler: async (request, reply) => reply.header('Cache-Control', 'no-store').type('application/yaml; charset=utf-8').send(stringify(app.specFor(request))),
  })
}
