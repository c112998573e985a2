import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

/** openapi.yaml at the project root; src/plugins and dist/plugins are two levels below. */
const SPEC_FILE = join(dirname(fileURLToPath(import.meta.url)), '../../openapi.yaml')

/**
 * Serves the hand-written spec as it is (static mode: the routes never rewrite the
 * contract) and Swagger UI at /docs. The spec's server list points at PUBLIC_URL when set.
 */
export default fp(async function swaggerPlugin (app: FastifyInstance) {
  const document = parse(readFileSync(SPEC_FILE, 'utf8'))
  if (app.config.publicUrl) document.servers = [{ url: app.config.publicUrl }]
  await app.register(swagger, { mode: 'static', specification: { document } })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // swagger-ui's default CSP less `upgrade-insecure-requests`, which would break the
    // docs of a server reached over plain http (the default on 127.0.0.1).
    staticCSP: "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; frame-ancestors 'self'; img-src 'self' data: validator.swagger.io; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' https:",
    uiConfig: { deepLinking: true, defaultModelsExpandDepth: 0 },
  })
}, { name: 'swagger' })
