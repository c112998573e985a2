import autocannon from 'autocannon'
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
const env = { ...process.env, PORT: '39123', HOST: '127.0.0.1', DATA_DIR: '/tmp/prof/data', ADMIN_TOKEN: 'admintokenadmintoken1234', LOG_LEVEL: 'warn', RATE_LIMIT_POLLS_PER_MINUTE: '1000000', RATE_LIMIT_STARTS_PER_MINUTE: '1000000' }
const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir=/tmp/prof', 'dist/server.js'], { env, stdio: 'inherit' })
await sleep(1500)
const h = { authorization: 'Bearer admintokenadmintoken1234', 'content-type': 'application/json' }
await fetch('http://127.0.0.1:39123/api/v1/admin/firms/f', { method: 'PUT', headers: h, body: '{"name":"F"}' })
const u = await (await fetch('http://127.0.0.1:39123/api/v1/admin/users', { method: 'POST', headers: h, body: '{"name":"u","firms":["f"]}' })).json() as { token: string }
const uh = { authorization: `Bearer ${u.token}`, 'content-type': 'application/json' }
await fetch('http://127.0.0.1:39123/api/v1/idm/f/t/x', { method: 'PUT', headers: uh, body: '{"id":"x"}' })
const st = await (await fetch('http://127.0.0.1:39123/api/v1/idm/f/t/export', { method: 'POST', headers: uh, body: '{}' })).json() as { requestId: string }
await sleep(500)
const r = await autocannon({ url: `http://127.0.0.1:39123/api/v1/request/${st.requestId}`, connections: 10, duration: 5, headers: { authorization: `Bearer ${u.token}` } })
console.log('status rps', r.requests.average, 'non2xx', r.non2xx)
const r2 = await autocannon({ url: 'http://127.0.0.1:39123/healthz', connections: 10, duration: 5 })
console.log('healthz rps', r2.requests.average)
child.kill('SIGTERM')
await new Promise((r) => child.on('exit', r))
