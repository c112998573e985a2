import type { Config } from '../config.js'
import { openSqliteStore } from './sqlite/sqlite-store.js'
import type { Store } from './store.js'

/** Opens the store the configuration names: today the SQLite file in DATA_DIR. */
export async function openStore (config: Pick<Config, 'dataDir'>): Promise<Store> {
  return openSqliteStore(config.dataDir)
}
