import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'
import { loggerOptions, requestIdOf } from './logger.js'
import { clientErrorHandler, frameworkErrors } from './plugins/errors.js'

/**
 * Fastify's constructor options: logging and request ids, strict validation, what a
 * client can make the server hold before a route sees the request, how a stop treats
 * open connections, and the problem answers to what fails before any route runs.
 */
export function serverOptions (config: Config, logger: FastifyServerOptions['logger'] = loggerOptions(config)): FastifyServerOptions {
  return {
    logger,
    genReqId: requestIdOf,
    ajv: {
      customOptions: {
        // Unknown properties are rejected by the schemas, never silently dropped.
        removeAdditional: false,
        coerceTypes: false,
        keywords: ['example'],
      },
    },
    bodyLimit: 1024 * 1024,
    routerOptions: { maxParamLength: 1024 },
    // Behind a proxy (TRUST_PROXY), the links handed out name the host the client used.
    trustProxy: config.trustProxy,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    frameworkErrors: frameworkErrors(config),
    clientErrorHandler,
  }
}
