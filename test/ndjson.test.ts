import t from 'tap'
import fc from 'fast-check'
import { AppError } from '../src/errors.js'
import { compactJson, parseObjectLine, readLines, type NdjsonLimits } from '../src/services/ndjson.js'

const BOM = Buffer.from([0xef, 0xbb, 0xbf])
const ROOMY: NdjsonLimits = { maxLineBytes: 1024 * 1024, maxTotalBytes: 1024 * 1024 * 1024 }

async function * chunked (body: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let start = 0
  for (const cut of cuts) {
    if (cut > start) yield body.subarray(start, cut)
    start = Math.max(start, cut)
  }
  if (start < body.length) yield body.subarray(start)
}

async function collect (body: AsyncIterable<Buffer>, limits = ROOMY): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = []
  for await (const { line, lineNo } of readLines(body, limits)) out.push([line.toString('utf8'), lineNo])
  return out
}

/** Runs fn and returns the AppError it throws; fails the test for anything else. */
async function appErrorOf (fn: () => unknown): Promise<AppError> {
  try {
    await fn()
  } catch (err) {
    if (err instanceof AppError) return err
    throw new Error(`expected an AppError, got ${String(err)}`)
  }
  throw new Error('expected an AppError, nothing was thrown')
}

// One line of a generated body: a JSON object (maybe padded with spaces) or a blank line.
const lineArb = fc.oneof(
  fc.record({
    value: fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
    id: fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }),
    pad: fc.constantFrom('', ' ', '\t', '  \t'),
  }).map(({ value, id, pad }) => ({ json: JSON.stringify({ ...value, id }), pad })),
  fc.constantFrom('', ' ', '\t', '\r', ' \r').map((blank) => ({ json: '', pad: blank }))
)

const bodyArb = fc.record({
  lines: fc.array(lineArb, { maxLength: 30 }),
  crlf: fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
  trailingNewline: fc.boolean(),
  bom: fc.boolean(),
  cuts: fc.array(fc.nat({ max: 1_000_000 }), { maxLength: 40 }),
})

t.test('readLines yields the same lines whatever the chunk boundaries', async (t) => {
  await fc.assert(fc.asyncProperty(bodyArb, async ({ lines, crlf, trailingNewline, bom, cuts }) => {
    const text = lines.map((l, i) => l.pad + l.json + l.pad + (i < lines.length - 1 || trailingNewline ? (crlf[i] ? '\r\n' : '\n') : '')).join('')
    const body = Buffer.concat([bom ? BOM : Buffer.alloc(0), Buffer.from(text, 'utf8')])
    const points = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b)
    const expected = lines.flatMap((l, i): Array<[string, number]> => l.json ? [[l.json, i + 1]] : [])
    const actual = await collect(chunked(body, points))
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      throw new Error(`lines differ for cuts ${JSON.stringify(points)}:\n${JSON.stringify(actual)}\n${JSON.stringify(expected)}`)
    }
  }), { numRuns: 300 })
  t.pass('property held')
})

t.test('readLines: specific shapes', async (t) => {
  const one = (s: string | Buffer, cuts: number[] = []) => collect(chunked(Buffer.isBuffer(s) ? s : Buffer.from(s), cuts))
  t.same(await one('{"id":"a"}'), [['{"id":"a"}', 1]], 'last line without newline')
  t.same(await one('\n\n{"id":"a"}\r\n\r\n{"id":"b"}\n'), [['{"id":"a"}', 3], ['{"id":"b"}', 5]], 'blank lines counted, CRLF')
  t.same(await one(''), [], 'empty body')
  t.same(await one('\n \r\n\t\n'), [], 'only blank lines')
  const withBom = Buffer.concat([BOM, Buffer.from('{"id":"a"}\n{"id":"b"}\n')])
  t.same(await one(withBom), [['{"id":"a"}', 1], ['{"id":"b"}', 2]], 'BOM in one chunk')
  t.same(await one(withBom, [1]), [['{"id":"a"}', 1], ['{"id":"b"}', 2]], 'BOM split after its first byte')
  t.same(await one(withBom, [2, 3]), [['{"id":"a"}', 1], ['{"id":"b"}', 2]], 'BOM split after its second byte')
  t.same(await one(Buffer.concat([BOM, BOM, Buffer.from('{"id":"a"}')])), [['\ufeff{"id":"a"}', 1]], 'only one leading BOM is removed')
  // A multi-byte character split across chunks is reassembled.
  const emoji = Buffer.from('{"id":"😀é"}\n')
  t.same(await one(emoji, [8, 9, 10, 12]), [['{"id":"😀é"}', 1]])
})

t.test('readLines: a line growing past the object limit throws before more is read', async (t) => {
  const limits = { maxLineBytes: 1000, maxTotalBytes: 1024 * 1024 * 1024 }
  let pulled = 0
  async function * endless (): AsyncGenerator<Buffer> {
    yield Buffer.from('{"id":"a"}\n\n{"id":"b"}\n')
    for (;;) {
      pulled++
      yield Buffer.alloc(512, 0x61)
    }
  }
  const err = await appErrorOf(() => collect(endless(), limits))
  t.equal(err.code, 'OBJECT_TOO_LARGE')
  t.equal(err.status, 413)
  t.equal(err.extra.line, 4)
  // 1000 + 4096 bytes of slack: the 10th chunk of 512 bytes crosses it.
  t.equal(pulled, 10, 'stops reading as soon as the pending line is too large')

  // Spaces around a line within the slack are not an error.
  const padded = ' '.repeat(4000) + '{"id":"a"}' + ' '.repeat(50)
  t.same(await collect(chunked(Buffer.from(padded + '\n'), [100, 2000, 4050]), limits), [['{"id":"a"}', 1]])
})

t.test('readLines: a body past the total limit throws PAYLOAD_TOO_LARGE', async (t) => {
  const line = Buffer.from('{"id":"x"}\n') // 11 bytes
  const limits = { maxLineBytes: 1000, maxTotalBytes: 110 }
  const exact = Buffer.concat(Array.from({ length: 10 }, () => line))
  t.equal((await collect(chunked(exact, [11, 50]), limits)).length, 10, 'exactly at the limit is accepted')

  let pulled = 0
  async function * endless (): AsyncGenerator<Buffer> {
    for (;;) {
      pulled++
      yield line
    }
  }
  const seen: number[] = []
  const err = await appErrorOf(async () => {
    for await (const { lineNo } of readLines(endless(), limits)) seen.push(lineNo)
  })
  t.equal(err.code, 'PAYLOAD_TOO_LARGE')
  t.equal(err.status, 413)
  t.equal(pulled, 11, 'the chunk that crosses the limit is the last one read')
  t.same(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
})

/** What parseObjectLine must decide, written independently of it. */
function oracle (buf: Buffer, maxBytes: number): { ok: true, id: string } | { ok: false, code: string } {
  if (buf.length > maxBytes) return { ok: false, code: 'OBJECT_TOO_LARGE' }
  let value: unknown
  try {
    // A BOM is not JSON whitespace (RFC 8259): keep it so that JSON.parse refuses it.
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf))
  } catch {
    return { ok: false, code: 'VALIDATION_FAILED' }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, code: 'VALIDATION_FAILED' }
  const id = (value as { id?: unknown }).id
  if (typeof id !== 'string' || id.length < 1 || id.length > 256 || id.includes('\0')) return { ok: false, code: 'VALIDATION_FAILED' }
  // well-formed: no lone surrogates
  if (!/^(?:[^\ud800-\udfff]|[\ud800-\udbff][\udc00-\udfff])*$/.test(id)) return { ok: false, code: 'VALIDATION_FAILED' }
  return { ok: true, id }
}

const idArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: fc.constantFrom('a', '\0', '\ud800', '\udc00', 'é', '😀'), maxLength: 260 }),
  fc.integer(), fc.constant(null), fc.boolean(), fc.array(fc.string(), { maxLength: 2 })
)

const lineBytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.json().map((s) => Buffer.from(s)),
  fc.record({ id: idArb, rest: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }) })
    .map(({ id, rest }) => Buffer.from(JSON.stringify({ ...rest, id }))),
  // valid-looking lines with a few bytes damaged
  fc.record({ id: fc.string({ minLength: 1, maxLength: 20 }), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) })
    .map(({ id, at, byte }) => {
      const b = Buffer.from(JSON.stringify({ id }))
      b[at % b.length] = byte
      return b
    })
)

t.test('parseObjectLine returns a valid id or throws an AppError naming the line', async (t) => {
  const maxBytes = 400
  fc.assert(fc.property(lineBytesArb, fc.integer({ min: 1, max: 1_000_000 }), (buf, lineNo) => {
    const want = oracle(buf, maxBytes)
    let got: { ok: true, id: string } | { ok: false, code: string }
    try {
      got = { ok: true, id: parseObjectLine(buf, lineNo, maxBytes) }
    } catch (err) {
      if (!(err instanceof AppError)) throw new Error(`not an AppError: ${String(err)}`)
      if (err.extra.line !== lineNo) throw new Error(`extra.line is ${String(err.extra.line)}, not ${lineNo}`)
      if (!err.detail?.startsWith(`line ${lineNo}: `)) throw new Error(`detail does not name the line: ${err.detail}`)
      got = { ok: false, code: err.code }
    }
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      throw new Error(`for ${JSON.stringify(buf.toString('latin1'))}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
    }
  }), { numRuns: 2000 })
  t.pass('property held')
})

t.test('parseObjectLine: specific cases', async (t) => {
  const max = 1024
  const refused = async (label: string, buf: Buffer | string, code = 'VALIDATION_FAILED') => {
    try {
      const id = parseObjectLine(Buffer.isBuffer(buf) ? buf : Buffer.from(buf), 7, max)
      t.fail(`${label}: accepted with id ${JSON.stringify(id)}`)
    } catch (err) {
      t.ok(err instanceof AppError, `${label}: an AppError`)
      t.equal((err as AppError).code, code, `${label}: ${code}`)
      t.equal((err as AppError).extra.line, 7, `${label}: names the line`)
    }
  }
  await refused('invalid UTF-8', Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]))
  await refused('UTF-8 encoded surrogate', Buffer.concat([Buffer.from('{"id":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]))
  await refused('overlong UTF-8', Buffer.concat([Buffer.from('{"id":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]))
  await refused('not JSON', '{"id":"a",}')
  await refused('truncated JSON', '{"id":"a"')
  await refused('two values', '{"id":"a"}{"id":"b"}')
  await refused('array', '[{"id":"a"}]')
  await refused('null', 'null')
  await refused('number', '42')
  await refused('string', '"a"')
  await refused('missing id', '{"name":"a"}')
  await refused('numeric id', '{"id":12}')
  await refused('null id', '{"id":null}')
  await refused('empty id', '{"id":""}')
  await refused('257-char id', JSON.stringify({ id: 'x'.repeat(257) }))
  await refused('lone surrogate escape', '{"id":"\\ud800"}')
  await refused('lone low surrogate escape', '{"id":"a\\udc00"}')
  await refused('NUL in id', '{"id":"a\\u0000b"}')
  await refused('BOM before the object', Buffer.concat([BOM, Buffer.from('{"id":"a"}')]))

  t.equal(parseObjectLine(Buffer.from(JSON.stringify({ id: 'x'.repeat(256) })), 1, max), 'x'.repeat(256), '256-char id accepted')
  t.equal(parseObjectLine(Buffer.from('{"id":"\\ud83d\\ude00"}'), 1, max), '😀', 'escaped surrogate pair accepted')
  t.equal(parseObjectLine(Buffer.from('{"id":"a","id":"b"}'), 1, max), 'b', 'duplicate keys: the last one is the id, as JSON.parse reads it')

  const exact = (n: number) => {
    const head = '{"id":"a","p":"'
    const line = head + 'x'.repeat(n - head.length - 2) + '"}'
    return Buffer.from(line)
  }
  t.equal(exact(max).length, max)
  t.equal(parseObjectLine(exact(max), 3, max), 'a', 'exactly OBJECT_MAX_BYTES accepted')
  await refused('one byte over', exact(max + 1), 'OBJECT_TOO_LARGE')
  // The limit is in bytes, not characters.
  const multi = Buffer.from(JSON.stringify({ id: 'a', p: 'é'.repeat(510) }))
  t.ok(multi.length > max && JSON.stringify({ id: 'a', p: 'é'.repeat(510) }).length < max)
  await refused('over in bytes though not in characters', multi, 'OBJECT_TOO_LARGE')
})

t.test('compactJson keeps the value and its tokens, on one line', async (t) => {
  fc.assert(fc.property(fc.jsonValue(), fc.constantFrom(0, 1, 2, '\t', ' \r\n'), (value, indent) => {
    const text = JSON.stringify(value, null, indent)
    const compact = compactJson(text)
    if (compact !== JSON.stringify(value)) throw new Error(`${JSON.stringify(text)} compacted to ${JSON.stringify(compact)}`)
  }), { numRuns: 500 })
  t.equal(compactJson('\ufeff{ "n" : 12345678901234567890 , "f":1.50,"e":1E+2 }'), '{"n":12345678901234567890,"f":1.50,"e":1E+2}')
  t.equal(compactJson('{"s":"  a \\" b \\\\ ","t":"\\u0020"}\n'), '{"s":"  a \\" b \\\\ ","t":"\\u0020"}')
})
