import autocannon from 'autocannon'
import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
const flags = process.argv.slice(2)
const PORT = 40000 + Math.floor(Math.random() * 9000)
rmSync('/tmp/rss-load', { recursive: true, force: true })
const env = { ...process.env, PORT: String(PORT), HOST: '127.0.0.1', DATA_DIR: '/tmp/rss-load', ADMIN_TOKEN: 'admintokenadmintoken1234', LOG_LEVEL: 'warn', RATE_LIMIT_POLLS_PER_MINUTE: '1000000', RATE_LIMIT_STARTS_PER_MINUTE: '1000000' }
const child = spawn(process.execPath, [...flags, 'dist/server.js'], { env, stdio: 'inherit' })
const rss = () => { const s = readFileSync(`/proc/${child.pid}/status`, 'utf8'); return `rss ${Number(/VmRSS:\s+(\d+)/.exec(s)![1]) >> 10} hwm ${Number(/VmHWM:\s+(\d+)/.exec(s)![1]) >> 10} MiB` }
for (;;) { try { if ((await fetch(`http://127.0.0.1:${PORT}/readyz`)).ok) break } catch {} await sleep(200) }
const h = { authorization: 'Bearer admintokenadmintoken1234', 'content-type': 'application/json' }
await fetch(`http://127.0.0.1:${PORT}/api/v1/admin/firms/f`, { method: 'PUT', headers: h, body: '{"name":"F"}' })
const u = await (await fetch(`http://127.0.0.1:${PORT}/api/v1/admin/users`, { method: 'POST', headers: h, body: '{"name":"u","firms":["f"]}' })).json() as { token: string }
const uh = { authorization: `Bearer ${u.token}`, 'content-type': 'application/json' }
await fetch(`http://127.0.0.1:${PORT}/api/v1/idm/f/t/x`, { method: 'PUT', headers: uh, body: '{"id":"x"}' })
const st = await (await fetch(`http://127.0.0.1:${PORT}/api/v1/idm/f/t/export`, { method: 'POST', headers: uh, body: '{}' })).json() as { requestId: string }
await sleep(500)
console.log('idle', rss())
const r2 = await autocannon({ url: `http://127.0.0.1:${PORT}/healthz`, connections: 10, duration: 4 })
console.log('after healthz', rss(), Math.round(r2.requests.average), 'req/s')
const r = await autocannon({ url: `http://127.0.0.1:${PORT}/api/v1/request/${st.requestId}`, connections: 10, duration: 4, headers: { authorization: `Bearer ${u.token}` } })
console.log('after status', rss(), Math.round(r.requests.average), 'req/s')
child.kill('SIGTERM')
await new Promise((r) => child.on('exit', r))
