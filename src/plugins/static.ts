import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { mkdirSync } from 'node:fs'
import { exportsDir } from '../files/local-storage.js'

/**
 * `reply.sendFile` for the local file storage (src/files/local-storage.ts names its root on
 * every send); it serves no route of its own.
 */
export default fp(async function staticPlugin (app: FastifyInstance) {
  const root = exportsDir(app.config)
  // @fastify/static warns about a root that does not exist yet (a first start).
  mkdirSync(root, { recursive: true })
  await app.register(fastifyStatic, { root, serve: false })
}, { name: 'static' })
