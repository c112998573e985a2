import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'
import authPlugin from './plugins/auth.js'
import compressPlugin from './plugins/compress.js'
import errorsPlugin from './plugins/errors.js'
import fieldHintsPlugin from './plugins/field-hints.js'
import helmetPlugin from './plugins/helmet.js'
import jsonBodyPlugin from './plugins/json-body.js'
import rateLimitPlugin from './plugins/rate-limit.js'
import requestHooksPlugin from './plugins/request-hooks.js'
import servicesPlugin, { type ServicesOptions } from './plugins/services.js'
import storePlugin from './plugins/store.js'
import swaggerPlugin from './plugins/swagger.js'
import adminRoutes from './routes/admin.js'
import exportsRoutes from './routes/exports.js'
import filesRoutes from './routes/files.js'
import objectsRoutes from './routes/objects.js'
import operationsRoutes from './routes/operations.js'
import { serverOptions } from './server-options.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/**
 * Builds the application, in this order: the configuration; the framework's plugins,
 * one file each; the application's own (request hooks, JSON bodies, hints for misnamed
 * fields, the store, the services on it, authentication); then the routes of each area. Listening is left to
 * the caller. `exportTask` wraps how a page is handed to the worker pool (tests hold a job's
 * end with it, to see it running on however fast a machine).
 */
export async function buildApp (config: Config, options: { logger?: FastifyServerOptions['logger'] } & ServicesOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(serverOptions(config, options.logger))
  app.decorate('config', config)

  await app.register(errorsPlugin)
  await app.register(helmetPlugin)
  await app.register(rateLimitPlugin)
  await app.register(compressPlugin)
  await app.register(swaggerPlugin)

  await app.register(requestHooksPlugin)
  await app.register(jsonBodyPlugin)
  await app.register(fieldHintsPlugin)
  await app.register(storePlugin)
  await app.register(servicesPlugin, { exportTask: options.exportTask })
  await app.register(authPlugin)

  await app.register(operationsRoutes)
  await app.register(adminRoutes)
  await app.register(objectsRoutes)
  await app.register(exportsRoutes)
  await app.register(filesRoutes)
  return app
}
