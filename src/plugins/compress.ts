import compress from '@fastify/compress'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/** Response compression, only for routes that ask for it with their own `compress` options. */
export default fp(async function compressPlugin (app: FastifyInstance) {
  await app.register(compress, { global: false })
}, { name: 'compress' })
