import { createExportPool } from '../src/worker/pool.js'
const ep = createExportPool(1)
await new Promise((r) => setTimeout(r, 3000))
console.log('export pool alive')
await ep.destroy()
