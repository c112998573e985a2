import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { baseUrl } from './request-hooks.js'

/** openapi.yaml at the project root; src/plugins and dist/plugins are two levels below. */
const SPEC_FILE = join(dirname(fileURLToPath(import.meta.url)), '../../openapi.yaml')

declare module 'fastify' {
  interface FastifyInstance {
    /** The spec as a request sees it: its `servers` is this server, as the request reached it. */
    specFor: (request: FastifyRequest) => Record<string, unknown>
  }
}

/**
 * Serves the hand-written spec as it is (static mode: the routes never rewrite the
 * contract), but for its `servers`, which name this server as the client reached it
 * (PUBLIC_URL, else the request's origin), so "Try it out" works on any host and port;
 * and Swagger UI at /docs under a CSP that needs nothing inline.
 */
export default fp(async function swaggerPlugin (app: FastifyInstance) {
  const document = parse(readFileSync(SPEC_FILE, 'utf8')) as Record<string, unknown>
  // Each answer names the host it was asked for: no cache may keep one for another host.
  const specFor = (request: FastifyRequest): Record<string, unknown> =>
    ({ ...document, servers: [{ url: baseUrl(request), description: 'This server' }] })
  app.decorate('specFor', specFor)
  await app.register(swagger, { mode: 'static', specification: { document: document as never } })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // swagger-ui's default CSP, less `upgrade-insecure-requests` (which would break the
    // docs of a server reached over plain http, the default on 127.0.0.1) and less every
    // outside origin: nothing is fetched from elsewhere, nothing inline is allowed (the
    // base layout has no top bar, whose logo carried an inline <style>).
    staticCSP: "default-src 'self'; base-uri 'self'; font-src 'self' data:; frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self'",
    uiConfig: { deepLinking: true, defaultModelsExpandDepth: 0, layout: 'BaseLayout', validatorUrl: null },
    transformSpecification: (_spec, request, reply) => {
      reply.header('Cache-Control', 'no-store')
      return specFor(request)
    },
    transformSpecificationClone: false,
  })
}, { name: 'swagger' })
