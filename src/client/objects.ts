import { createReadStream } from 'node:fs'

/**
 * The objects of an NDJSON file, one at a time: read in 1 MiB chunks and split on
 * newlines, so memory holds one chunk and one line, whatever the file's size.
 */
export async function * readObjects (path: string): AsyncGenerator<Record<string, unknown>> {
  let rest: Buffer | undefined
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const data = rest ? Buffer.concat([rest, chunk]) : chunk
    let start = 0
    for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a, start)) {
      if (nl > start) yield JSON.parse(data.toString('utf8', start, nl))
      start = nl + 1
    }
    rest = start < data.length ? data.subarray(start) : undefined
  }
  if (rest?.length) yield JSON.parse(rest.toString('utf8'))
}
