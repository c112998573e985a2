import { createExportPool, createImportPool } from '../src/worker/pool.js'
const ip = createImportPool(1)
try { console.log(await ip.tasks.merge({ source: { dialect: 'sqlite', path: '/nonexistent' }, stagePath: '/x', importId: 'a', firmId: 'f', type: 't', now: 1 })) } catch (e) { console.log('import err', (e as Error).message) }
const ep = createExportPool(1)
await new Promise((r) => setTimeout(r, 2000))
console.log('export pool alive')
await ip.destroy(); await ep.destroy()
