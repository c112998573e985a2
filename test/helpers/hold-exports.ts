/**
 * Preloaded into a child server (`startServer(…, { HOLD_EXPORTS_FILE })`): while that file
 * exists, an export page that its worker has written is not reported, so its job stays
 * InProgress — a process test sees a job running however fast the machine writes it, and
 * removes the file when it is done looking. Export tasks are told by their `finalPath`.
 */
import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { Piscina } from 'piscina'

const file = process.env.HOLD_EXPORTS_FILE
if (file) {
  const run = Piscina.prototype.run
  Piscina.prototype.run = async function (this: Piscina, task: unknown, options?: Parameters<Piscina['run']>[1]) {
    const outcome: unknown = await run.call(this, task, options)
    if (typeof task === 'object' && task !== null && 'finalPath' in task) {
      while (existsSync(file)) await sleep(20)
    }
    return outcome
  }
}
