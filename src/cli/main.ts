#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { BulkExportError, createBulkExportClient } from '../client/index.js'
import { pull, UsageError } from './pull.js'

/**
 * `bulk-export`: pull a collection into a directory (resumable, verified), and look at,
 * list or cancel your export requests. The token comes from BULK_EXPORT_TOKEN or --token;
 * the server from BULK_EXPORT_URL or --url.
 */
const program = new Command('bulk-export')
  .description('Pull a tenant\'s collections from a bulk export server as verified NDJSON files.')
  .addOption(new Option('--url <url>', 'the server').env('BULK_EXPORT_URL'))
  .addOption(new Option('--token <token>', 'a user token (bes_…)').env('BULK_EXPORT_TOKEN'))
  .exitOverride()

/** An option's value as a whole number from `min` to `max`; anything else is a usage error. */
function whole (min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^\d+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`a whole number from ${min} to ${max}`)
    return n
  }
}

/** The server and token every command needs. */
function connection (): { url: string, token: string } {
  const { url, token } = program.opts<{ url?: string, token?: string }>()
  if (!url) throw new UsageError('name the server: --url https://… (or BULK_EXPORT_URL)')
  if (!token) throw new UsageError('give a user token: BULK_EXPORT_TOKEN=bes_… (or --token)')
  return { url, token }
}

const stop = new AbortController()
let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true
    stop.abort()
  })
}

program.command('pull')
  .description('export every page of a collection into DIR, verified; run it again to resume')
  .requiredOption('--firm <firmId>', 'the firm')
  .requiredOption('--type <objectType>', 'the collection (object type)')
  .requiredOption('--out <dir>', 'where the files and the pull\'s state go')
  .option('--merge', 'one file <type>.ndjson instead of one per page', false)
  .option('--cursor <cursor>', 'start a new pull after this cursor (a page\'s nextCursor)')
  .option('--refresh', 'when the pull in DIR is complete, pull again (its files are replaced); an unfinished one is resumed', false)
  .action(async (opts: { firm: string, type: string, out: string, merge: boolean, cursor?: string, refresh: boolean }) => {
    await pull({ ...connection(), firmId: opts.firm, objectType: opts.type, out: opts.out, merge: opts.merge, cursor: opts.cursor, refresh: opts.refresh, signal: stop.signal, log: process.stderr })
  })

program.command('status')
  .description('one request\'s status, as JSON')
  .argument('<requestId>')
  .option('--wait <seconds>', 'wait up to this long (≤ 60) for it to change (long-poll)', whole(0, 60), 0)
  .action(async (requestId: string, opts: { wait: number }) => {
    const client = createBulkExportClient({ baseUrl: connection().url, token: connection().token })
    process.stdout.write(JSON.stringify(await client.getRequest(requestId, opts.wait), null, 2) + '\n')
  })

program.command('list')
  .description('your requests, newest first, as JSON')
  .addOption(new Option('--status <status...>', 'only these statuses').choices(['Pending', 'InProgress', 'Completed', 'Failed']))
  .option('--firm <firmId>', 'only this firm')
  .option('--type <objectType>', 'only this collection')
  .option('--limit <n>', 'at most this many (1–100)', whole(1, 100), 20)
  .action(async (opts: { status?: Array<'Pending' | 'InProgress' | 'Completed' | 'Failed'>, firm?: string, type?: string, limit: number }) => {
    const client = createBulkExportClient({ baseUrl: connection().url, token: connection().token })
    const list = await client.listRequests({ status: opts.status, firmId: opts.firm, objectType: opts.type, limit: opts.limit })
    process.stdout.write(JSON.stringify(list, null, 2) + '\n')
  })

program.command('cancel')
  .description('cancel a request (or delete its finished file), as JSON')
  .argument('<requestId>')
  .action(async (requestId: string) => {
    const client = createBulkExportClient({ baseUrl: connection().url, token: connection().token })
    process.stdout.write(JSON.stringify(await client.cancelRequest(requestId), null, 2) + '\n')
  })

try {
  await program.parseAsync()
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2)
  if (interrupted) {
    process.stderr.write('\nstopped; run the same command again to go on where it stopped\n')
    process.exit(130)
  }
  if (err instanceof UsageError) {
    process.stderr.write(`bulk-export: ${err.message}\n`)
    process.exit(2)
  }
  const message = err instanceof BulkExportError ? err.message : (err as Error).message
  process.stderr.write(`bulk-export: ${message}\n`)
  process.exit(1)
}
