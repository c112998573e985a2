import { Piscina } from 'piscina'
import { fileURLToPath } from 'node:url'
const f = fileURLToPath(new URL('../src/worker/import-task.ts', import.meta.url))
const p = new Piscina({ filename: f, minThreads: 1, maxThreads: 1 })
p.on('error', (e) => console.log('pool error', e.message))
await new Promise((r) => setTimeout(r, 2000))
try { console.log(await p.run({ source: { dialect: 'sqlite', path: '/nonexistent' }, stagePath: '/x' }, { name: 'merge' })) } catch (e) { console.log('run err', (e as Error).message) }
const p2 = new Piscina({ filename: f, minThreads: 0, maxThreads: 1 })
p2.on('error', (e) => console.log('pool2 error', e.message))
try { console.log(await p2.run({ source: { dialect: 'sqlite', path: '/nonexistent' }, stagePath: '/x' }, { name: 'merge' })) } catch (e) { console.log('run2 err', (e as Error).message) }
await p.destroy(); await p2.destroy()
