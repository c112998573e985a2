import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { openStore } from '../store/open-store.js'
import type { Store } from '../store/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: Store
  }
}

/** Opens the store the configuration names (migrating it) and closes it last. */
export default fp(async function storePlugin (app: FastifyInstance) {
  const store = await openStore(app.config)
  app.decorate('store', store)
  // Close hooks run in reverse order of registration: after everything that uses the store.
  app.addHook('onClose', async () => { await store.close() })
}, { name: 'store' })
