import tap from 'tap'
import { readFileSync } from 'node:fs'
import { SERVER_ENV, SERVER_NODE_FLAGS } from '../scripts/lib/server-process.js'

tap.test('npm start runs the build with the same Node flags and environment as the benchmark and the demo', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }
  const words = pkg.scripts.start.split(/\s+/)
  t.same(words.slice(words.indexOf('node') + 1), [...SERVER_NODE_FLAGS, 'dist/server.js'], `start is "${pkg.scripts.start}"`)
  const env = Object.fromEntries(words.slice(words.indexOf('env') + 1, words.indexOf('node')).map((w) => w.split('=')))
  t.same(env, SERVER_ENV, 'and the same environment')
})
