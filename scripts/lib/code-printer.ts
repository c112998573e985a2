/**
 * Prints TypeScript expressions the way the project's linter (neostandard) wants them:
 * single quotes, bare keys where they are identifiers, spaces inside braces, and lines
 * broken only where they would pass `WIDTH` characters. A tiny tree of code is built
 * first, then printed; the generator of src/contract/generated.ts uses it.
 */

const WIDTH = 120

export type Code =
  | { kind: 'atom', text: string }
  | { kind: 'call', fn: string, args: Code[] }
  | { kind: 'object', entries: Array<[string, Code]> }
  | { kind: 'array', items: Code[] }

/** Code that is printed as it is (a name, a number, an expression). */
export const atom = (text: string): Code => ({ kind: 'atom', text })
/** `fn(args…)` */
export const call = (fn: string, ...args: Code[]): Code => ({ kind: 'call', fn, args })
/** `{ key: value, … }` */
export const object = (entries: Array<[string, Code]>): Code => ({ kind: 'object', entries })

/** A string literal in single quotes. */
function quote (s: string): string {
  return `'${JSON.stringify(s).slice(1, -1).replaceAll('\\"', '"').replaceAll("'", "\\'")}'`
}

/** A plain JSON value (an options bag, an enum's values) as code. */
export function literal (value: unknown): Code {
  if (typeof value === 'string') return atom(quote(value))
  if (Array.isArray(value)) return { kind: 'array', items: value.map(literal) }
  if (value !== null && typeof value === 'object') return object(Object.entries(value).map(([k, v]) => [k, literal(v)]))
  return atom(JSON.stringify(value))
}

const key = (k: string): string => /^([A-Za-z_$][\w$]*|[1-9]\d*)$/.test(k) ? k : quote(k)

function flat (code: Code): string {
  switch (code.kind) {
    case 'atom': return code.text
    case 'call': return `${code.fn}(${code.args.map(flat).join(', ')})`
    case 'array': return `[${code.items.map(flat).join(', ')}]`
    case 'object': return code.entries.length === 0 ? '{}' : `{ ${code.entries.map(([k, v]) => `${key(k)}: ${flat(v)}`).join(', ')} }`
  }
}

/**
 * Prints `code` starting at column `column` of a line indented by `indent` spaces; on
 * one line when it fits (and `room` more characters follow it on that line).
 */
export function print (code: Code, indent = 0, column = indent, room = 0): string {
  const one = flat(code)
  if (column + one.length + room <= WIDTH || code.kind === 'atom') return one
  const pad = ' '.repeat(indent + 2)
  const end = ' '.repeat(indent)
  switch (code.kind) {
    case 'object':
      return `{\n${code.entries.map(([k, v]) => `${pad}${key(k)}: ${print(v, indent + 2, indent + 4 + key(k).length, 1)},\n`).join('')}${end}}`
    case 'array':
      return `[\n${code.items.map((v) => `${pad}${print(v, indent + 2)},\n`).join('')}${end}]`
    case 'call': {
      // Hug an object or array argument, `fn({` … `}, options)`, or a lone call, `f(g(` … `))`.
      const [first, ...rest] = code.args
      const hugs = (c: Code | undefined): boolean => c?.kind === 'object' || c?.kind === 'array'
      const open = column + code.fn.length + 1
      if (hugs(first) || (first?.kind === 'call' && rest.length === 0)) {
        const tail = rest.map((a) => `, ${flat(a)}`).join('')
        if (open + tail.length < WIDTH) return `${code.fn}(${print(first, indent, open, room + tail.length + 1)}${tail})`
        // The options after the object are long too: break them as well.
        return `${code.fn}(${[print(first, indent, open, 3), ...rest.map((a) => print(a, indent, indent + 3, 1))].join(', ')})`
      }
      const last = code.args[code.args.length - 1]
      const head = `${code.fn}(${code.args.slice(0, -1).map((a) => `${flat(a)}, `).join('')}`
      if (hugs(last) && column + head.length < WIDTH) return `${head}${print(last, indent, column + head.length)})`
      return `${code.fn}(\n${code.args.map((a) => `${pad}${print(a, indent + 2)}`).join(',\n')}\n${end})`
    }
  }
}
