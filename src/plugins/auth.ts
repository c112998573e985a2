import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from '../errors.js'
import type { Principal } from '../services/access.js'
import { secretsEqual } from '../services/admin.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated user, on routes secured by `userToken`. */
    principal?: Principal
  }
  interface FastifyContextConfig {
    /** The security scheme the spec names for the operation. */
    security?: 'userToken' | 'adminToken' | 'none'
  }
}

function bearer (request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (!header) return undefined
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  return m ? m[1] : undefined
}

/** Principal of the request; only for routes secured by `userToken`. */
export function principalOf (request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('UNAUTHENTICATED')
  return request.principal
}

/**
 * Enforces the security scheme each operation declares in the spec, before the body is
 * read: admin routes take ADMIN_TOKEN, user routes a live user token.
 */
export default fp(async function authPlugin (app: FastifyInstance) {
  app.addHook('onRequest', async (request) => {
    const scheme = request.routeOptions.config?.security
    if (scheme === undefined || scheme === 'none') return
    const token = bearer(request)
    if (!token) throw new AppError('UNAUTHENTICATED', "send a valid token as 'Authorization: Bearer <token>'")
    if (scheme === 'adminToken') {
      const admin = app.config.adminToken
      if (admin === undefined) throw new AppError('UNAUTHENTICATED', 'the admin API is disabled: start the server with ADMIN_TOKEN set')
      if (!secretsEqual(token, admin)) {
        if (await app.services.admin.authenticate(token)) {
          throw new AppError('UNAUTHENTICATED', 'this is a user token, which opens the user API only; the admin API takes the ADMIN_TOKEN the server was started with')
        }
        throw new AppError('UNAUTHENTICATED', 'the admin token is not valid')
      }
      return
    }
    const principal = await app.services.admin.authenticate(token)
    if (!principal) {
      const admin = app.config.adminToken
      if (admin !== undefined && secretsEqual(token, admin)) {
        throw new AppError('UNAUTHENTICATED', "this is the server's ADMIN_TOKEN, which only opens the admin API; the user API takes a user token (bes_…): create a user with POST /api/v1/admin/users")
      }
      throw new AppError('UNAUTHENTICATED', 'the token is unknown or revoked')
    }
    request.principal = principal
  })
}, { name: 'auth', dependencies: ['services'] })
