import { build, createUser, importLines } from '../test/helpers/build.js'
const fakeT = { teardown: (f: () => void) => { process.on('beforeExit', f) } } as never
const app = await build(fakeT)
const u = await createUser(app, ['acme'])
const t0 = Date.now()
const res = await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', '{"id":"b"}'])
console.log(res.statusCode, res.body, Date.now() - t0)
const res2 = await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}', 'bad'])
console.log(res2.statusCode, res2.body, Date.now() - t0)
await app.close()
