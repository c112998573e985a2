import { parseArgs } from 'node:util'

/** A whole-number flag: its smallest value and, unless the flag is optional, its default. */
interface WholeFlag { min: number, default?: number }

type WholeValues<W> = { [K in keyof W]: W[K] extends { default: number } ? number : number | undefined }

/**
 * Reads a script's command line: whole-number flags (sizes may be written `1_000_000` or
 * `1,000,000` too, as they read best), string flags and boolean switches. `--help` prints `usage` and exits 0; anything malformed prints why
 * and exits 2, before the script has created anything it would have to clean up.
 */
export function parseFlags<W extends Record<string, WholeFlag>, S extends string = never, B extends string = never> (
  usage: string,
  spec: { whole: W, strings?: readonly S[], switches?: readonly B[] }
): WholeValues<W> & { [K in S]: string | undefined } & { [K in B]: boolean } {
  const options: Record<string, { type: 'string' | 'boolean', short?: string }> = { help: { type: 'boolean', short: 'h' } }
  for (const name of [...Object.keys(spec.whole), ...spec.strings ?? []]) options[name] = { type: 'string' }
  for (const name of spec.switches ?? []) options[name] = { type: 'boolean' }
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({ options, strict: true }).values
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage}`)
    process.exit(2)
  }
  if (values.help) {
    console.log(usage)
    process.exit(0)
  }
  const out: Record<string, number | string | boolean | undefined> = {}
  for (const [name, flag] of Object.entries(spec.whole)) {
    const raw = values[name] as string | undefined
    out[name] = raw === undefined ? flag.default : wholeNumber(name, raw, flag.min)
  }
  for (const name of spec.strings ?? []) out[name] = values[name]
  for (const name of spec.switches ?? []) out[name] = values[name] === true
  return out as WholeValues<W> & { [K in S]: string | undefined } & { [K in B]: boolean }
}

/** The value of `--name` as a whole number ≥ `min`; exits 2 with a message otherwise. */
function wholeNumber (name: string, raw: string, min: number): number {
  const n = Number(raw.replace(/[_,]/g, ''))
  if (raw.trim() === '' || !Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} must be a whole number ≥ ${min} (got ${JSON.stringify(raw)})`)
    process.exit(2)
  }
  return n
}
