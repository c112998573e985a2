import { performance } from 'node:perf_hooks'
import { request } from 'node:http'
import { build, createUser } from '../test/helpers/build.js'
import { writeDataset } from '../scripts/lib/bench/data.js'
import { createReadStream, statSync } from 'node:fs'
import { bareInsert, loadRows, openBareDb } from '../scripts/lib/bench/bare.js'
const fakeT = { teardown: (f: () => void) => { process.on('beforeExit', f) } } as never
const N = Number(process.argv[2] ?? 100000)
const ds = await writeDataset('/tmp/imp-prof.ndjson', N, 600, 1)
const app = await build(fakeT)
const u = await createUser(app, ['acme'])
await app.listen({ port: 0, host: '127.0.0.1' })
const port = (app.server.address() as { port: number }).port
const rows = loadRows(ds.path)
const bare = openBareDb('/tmp/imp-prof-bare.sqlite')
for (let r = 0; r < 3; r++) {
  const b = bareInsert(bare, `t${r}`, rows)
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    const req = request({ port, host: '127.0.0.1', method: 'POST', path: `/api/v1/idm/acme/t${r}/import`, headers: { ...u.headers, 'content-type': 'application/x-ndjson', 'content-length': String(statSync(ds.path).size) } }, (res) => { res.resume(); res.on('end', resolve) })
    req.on('error', reject)
    createReadStream(ds.path).pipe(req)
  })
  console.log(`round ${r}: ours ${(performance.now() - t0).toFixed(0)} ms, bare ${b.toFixed(0)} ms`)
}
await app.close()
