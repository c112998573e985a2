import { Worker } from 'node:worker_threads'
const w = new Worker('/work/main/.scratch/wk.cjs')
await new Promise((r) => w.on('exit', r))
