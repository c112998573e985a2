import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { operations } from '../contract/generated.js'

/** Firms, users and tokens (ADMIN_TOKEN). */
export default async function adminRoutes (fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const admin = app.services.admin

  app.route({
    ...operations.putFirm,
    handler: async (request, reply) => {
      const { firm, created } = await admin.putFirm(request.params.firmId, request.body?.name)
      return reply.code(created ? 201 : 200).send(firm)
    },
  })

  app.route({
    ...operations.createUser,
    handler: async (request, reply) => reply.code(201).send(await admin.createUser(request.body.name, request.body.firms)),
  })

  app.route({
    ...operations.listUserTokens,
    handler: async (request) => ({ tokens: await admin.listTokens(request.params.userId) }),
  })

  app.route({
    ...operations.createUserToken,
    handler: async (request, reply) => reply.code(201).send(await admin.issueToken(request.params.userId)),
  })

  app.route({
    ...operations.revokeUserToken,
    handler: async (request, reply) => {
      await admin.revokeToken(request.params.userId, request.params.tokenId)
      return reply.code(204).send()
    },
  })
}
