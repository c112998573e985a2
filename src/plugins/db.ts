import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { createAdminService, type AdminService } from '../services/admin.js'
import { createObjectsService, type ObjectsService } from '../services/objects.js'
import { openStore, type Store } from '../store/db.js'
import { createObjectsStore } from '../store/objects-store.js'

export interface Services {
  readonly admin: AdminService
  readonly objects: ObjectsService
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    store: Store
    services: Services
  }
}

/** Opens the SQLite store (migrating it), builds the services on it, closes it last. */
export default fp(async function dbPlugin (app: FastifyInstance, opts: { config: Config }) {
  const store = openStore(opts.config.dataDir)
  const objectsStore = createObjectsStore(store)
  app.decorate('config', opts.config)
  app.decorate('store', store)
  const objects = createObjectsService(objectsStore, opts.config)
  app.decorate('services', { admin: createAdminService(store), objects })
  // Imports a stop interrupted: valid ones are finished, partial ones dropped.
  const recovered = await objects.recoverImports()
  if (recovered.finished || recovered.discarded) app.log.warn(recovered, 'recovered imports interrupted by a stop')
  app.addHook('onClose', async () => {
    store.sqlite.close()
  })
}, { name: 'db' })
