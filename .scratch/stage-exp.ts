import { closeSync, openSync, readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { parseObjectLine, readLines } from '../src/services/ndjson.js'
import { StageWriter } from '../src/worker/stage-file.js'
const body = readFileSync('/tmp/ins-exp.ndjson')
const chunks: Buffer[] = []
for (let i = 0; i < body.length; i += 65536) chunks.push(body.subarray(i, i + 65536))
async function * gen () { for (const c of chunks) yield c }
for (let r = 0; r < 3; r++) {
  let t0 = performance.now()
  let n = 0
  for await (const { line } of readLines(gen(), { maxLineBytes: 1 << 20, maxTotalBytes: 1 << 30 })) n += line.length
  const tLines = performance.now() - t0
  t0 = performance.now()
  for await (const { line, lineNo } of readLines(gen(), { maxLineBytes: 1 << 20, maxTotalBytes: 1 << 30 })) parseObjectLine(line, lineNo, 1 << 20)
  const tParse = performance.now() - t0
  t0 = performance.now()
  const fd = openSync('/tmp/stage-exp.stage', 'w')
  const w = new StageWriter(fd)
  for await (const { line, lineNo } of readLines(gen(), { maxLineBytes: 1 << 20, maxTotalBytes: 1 << 30 })) w.add(parseObjectLine(line, lineNo, 1 << 20), line)
  w.flush(); closeSync(fd)
  const tAll = performance.now() - t0
  t0 = performance.now()
  for (const line of body.toString().split('\n')) if (line) JSON.parse(line)
  const tJson = performance.now() - t0
  console.log(`lines ${tLines.toFixed(0)} +parse ${tParse.toFixed(0)} +stage ${tAll.toFixed(0)} | bare JSON.parse ${tJson.toFixed(0)} ms`)
}
