/**
 * Derives src/contract/generated.ts (TypeBox schemas, their static types and one route
 * definition per operationId) and src/client/schema.ts (the client's types, by
 * openapi-typescript) from openapi.yaml, the hand-written source of truth.
 *
 *   npm run contract          rewrite the generated files
 *   npm run contract -- --check   exit 1 if a committed one is stale
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join, relative } from 'node:path'
import openapiTS, { astToString } from 'openapi-typescript'
import { parse } from 'yaml'
import { atom, call, literal, object, print, type Code } from './lib/code-printer.js'

type Json = Record<string, any>

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const SPEC_PATH = join(ROOT, 'openapi.yaml')
export const GENERATED_PATH = join(ROOT, 'src/contract/generated.ts')
export const CLIENT_TYPES_PATH = join(ROOT, 'src/client/schema.ts')

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const
/** Keywords that mean something to OpenAPI readers but nothing to a validator. */
const DOC_ONLY = new Set(['example', 'examples', 'externalDocs', 'xml', 'discriminator'])
/** Keywords passed through to the TypeBox options bag as they are. */
const PASS_THROUGH = [
  'description', 'pattern', 'minLength', 'maxLength', 'format', 'minimum', 'maximum',
  'exclusiveMinimum', 'exclusiveMaximum', 'minItems', 'maxItems', 'uniqueItems', 'default',
]

function refName (ref: string): string {
  const m = /^#\/components\/(schemas|parameters)\/(.+)$/.exec(ref)
  if (!m) throw new Error(`unsupported $ref ${ref}`)
  return m[2]
}

/** A schema's validation keywords and descriptions. */
function keywordsOf (schema: Json): Json {
  const opts: Json = {}
  for (const k of PASS_THROUGH) if (k in schema) opts[k] = schema[k]
  return opts
}

/** The TypeBox options bag of a schema (validation keywords and descriptions), if any. */
function options (schema: Json, extra: Json = {}): Code[] {
  const opts: Json = { ...extra, ...keywordsOf(schema) }
  return Object.keys(opts).length ? [literal(opts)] : []
}

const PRIMITIVE_TS: Record<string, string> = { string: 'string', integer: 'number', number: 'number', boolean: 'boolean' }

/** A branch that is only a primitive type (with its own keywords), no reference, enum or constant. */
const primitiveOnly = (s: Json): boolean => typeof s.type === 'string' && s.type in PRIMITIVE_TS && !s.$ref && !s.enum && !('const' in s)

/**
 * "A primitive or null" as one schema with a type list, `{ type: ['string', 'null'] }`,
 * instead of a union: the same values validate (a primitive's keywords apply to that type
 * only), and fast-json-stringify serialises a type list with a typeof check, where a
 * union made it run the validator on every branch of every response (format: uri
 * included). Undefined when `branches` are anything else.
 */
function nullablePrimitive (branches: Json[], outer: Json): Code | undefined {
  if (branches.length !== 2) return undefined
  const value = branches.find((b) => b.type !== 'null')
  if (!value || !branches.some((b) => b.type === 'null' && Object.keys(b).length === 1) || !primitiveOnly(value)) return undefined
  return call(`Type.Unsafe<${PRIMITIVE_TS[value.type]} | null>`, literal({ type: [value.type, 'null'], ...keywordsOf(value), ...keywordsOf(outer) }))
}

/**
 * A string enum as one `{ type: 'string', enum }` schema, not a union of constants: the
 * same values validate, and responses serialise without running the validator.
 */
function stringEnum (schema: Json): Code | undefined {
  if (!schema.enum.every((v: unknown) => typeof v === 'string')) return undefined
  const type = schema.enum.map((v: string) => print(literal(v))).join(' | ')
  return call(`Type.Unsafe<${type}>`, literal({ type: 'string', enum: schema.enum, ...keywordsOf(schema) }))
}

/** Renders one JSON Schema (OpenAPI 3.1 dialect) as TypeBox builder code. */
export function toTypeBox (schema: Json): Code {
  for (const k of Object.keys(schema)) {
    if (DOC_ONLY.has(k)) continue
    if (!['type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'const',
      'oneOf', 'anyOf', 'allOf', '$ref', 'title', ...PASS_THROUGH].includes(k)) {
      throw new Error(`unsupported schema keyword '${k}'`)
    }
  }
  const union = (parts: Code[], opts: Code[] = []): Code => call('Type.Union', { kind: 'array', items: parts }, ...opts)
  if (schema.$ref) return atom(refName(schema.$ref))
  if (schema.oneOf || schema.anyOf) {
    const branches: Json[] = schema.oneOf ?? schema.anyOf
    return nullablePrimitive(branches, schema) ?? union(branches.map(toTypeBox), options(schema))
  }
  if (schema.allOf) return call('Type.Intersect', { kind: 'array', items: schema.allOf.map(toTypeBox) }, ...options(schema))
  if ('const' in schema) return call('Type.Literal', literal(schema.const), ...options(schema))
  if (schema.enum) return stringEnum(schema) ?? union(schema.enum.map((v: unknown) => call('Type.Literal', literal(v))), options(schema))
  if (Array.isArray(schema.type)) {
    const branches = schema.type.map((t: string) => ({ ...schema, type: t }))
    return nullablePrimitive(branches.map((b: Json) => b.type === 'null' ? { type: 'null' } : b), {}) ?? union(branches.map(toTypeBox))
  }
  switch (schema.type) {
    case 'string': return call('Type.String', ...options(schema))
    case 'integer': return call('Type.Integer', ...options(schema))
    case 'number': return call('Type.Number', ...options(schema))
    case 'boolean': return call('Type.Boolean', ...options(schema))
    case 'null': return call('Type.Null')
    case 'array': return call('Type.Array', toTypeBox(schema.items ?? {}), ...options(schema))
    case 'object': {
      const required = new Set<string>(schema.required ?? [])
      const props = Object.entries<Json>(schema.properties ?? {}).map(([name, s]): [string, Code] => {
        const t = toTypeBox(s)
        return [name, required.has(name) ? t : call('Type.Optional', t)]
      })
      const extra: Json = {}
      if (schema.additionalProperties === false) extra.additionalProperties = false
      if (schema.additionalProperties === true) extra.additionalProperties = true
      return call('Type.Object', object(props), ...options(schema, extra))
    }
    case undefined: return call('Type.Unknown')
    default: throw new Error(`unsupported type ${schema.type}`)
  }
}

function refsOf (schema: unknown, out = new Set<string>()): Set<string> {
  if (schema && typeof schema === 'object') {
    for (const [k, v] of Object.entries(schema)) {
      if (k === '$ref' && typeof v === 'string') out.add(refName(v))
      else refsOf(v, out)
    }
  }
  return out
}

/** Orders component schemas so each comes after the ones it references. */
function ordered (schemas: Json): string[] {
  const done: string[] = []
  const visit = (name: string, path: string[]): void => {
    if (done.includes(name)) return
    if (path.includes(name)) throw new Error(`recursive schema ${[...path, name].join(' -> ')}`)
    for (const dep of refsOf(schemas[name])) visit(dep, [...path, name])
    done.push(name)
  }
  Object.keys(schemas).sort().forEach((n) => visit(n, []))
  return done
}

function resolveParam (spec: Json, p: Json): Json {
  return p.$ref ? spec.components.parameters[refName(p.$ref)] : p
}

/** The route definition of one operation: method, URL, auth scheme and schemas. */
function route (spec: Json, path: string, method: string, item: Json, op: Json): Code {
  const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p) => resolveParam(spec, p))
  const schema: Array<[string, Code]> = [['operationId', literal(op.operationId)]]
  for (const [where, name] of [['path', 'params'], ['query', 'querystring'], ['header', 'headers']]) {
    const ps = params.filter((p) => p.in === where)
    if (!ps.length) continue
    schema.push([name, call('Type.Object', object(ps.map((p): [string, Code] => {
      const t = toTypeBox(p.schema)
      // Node lower-cases header names.
      return [where === 'header' ? p.name.toLowerCase() : p.name, p.required ? t : call('Type.Optional', t)]
    })))])
  }
  const jsonBody = op.requestBody?.content?.['application/json']?.schema
  if (jsonBody) schema.push(['body', toTypeBox(jsonBody)])
  const responses: Array<[string, Code]> = []
  for (const [status, res] of Object.entries<Json>(op.responses ?? {})) {
    const s = res.content?.['application/json']?.schema
    if (/^2\d\d$/.test(status) && s) responses.push([status, toTypeBox(s)])
  }
  if (responses.length) schema.push(['response', object(responses)])
  const security: Json[] = op.security ?? spec.security ?? []
  const config: Json = { security: security.length ? Object.keys(security[0])[0] : 'none' }
  if (jsonBody && op.requestBody.required !== true) config.optionalBody = true
  if (op.requestBody?.content) config.bodyTypes = Object.keys(op.requestBody.content)
  return object([
    ['method', literal(method.toUpperCase())],
    ['url', literal(path.replace(/\{([^}]+)\}/g, ':$1'))],
    ['config', literal(config)],
    ['schema', object(schema)],
  ])
}

/** Builds the text of src/contract/generated.ts from the parsed spec. */
export function generate (spec: Json): string {
  const out: string[] = [
    '// GENERATED by scripts/gen-contract.ts from openapi.yaml. Do not edit: run `npm run contract`.',
    "import { Type, type Static } from '@sinclair/typebox'",
  ]
  const schemas = spec.components?.schemas ?? {}
  for (const name of ordered(schemas)) {
    out.push('', `export const ${name} = ${print(toTypeBox(schemas[name]), 0, `export const ${name} = `.length)}`)
    out.push(`export type ${name} = Static<typeof ${name}>`)
  }
  const codes: string[] = schemas.ErrorCode?.enum ?? []
  out.push('', '/** The spec\'s ErrorCode enum, in order. */')
  out.push(`export const errorCodes = ${print(literal(codes), 0, 'export const errorCodes = '.length, ' as const'.length)} as const`)

  const routes: Array<[string, Code]> = []
  for (const [path, item] of Object.entries<Json>(spec.paths)) {
    for (const method of METHODS) {
      if (item[method]) routes.push([item[method].operationId, route(spec, path, method, item, item[method])])
    }
  }
  out.push('', '/** One Fastify route definition per operationId: method, URL and request/response schemas. */')
  out.push(`export const operations = ${print(object(routes), 0, 'export const operations = '.length, ' as const'.length)} as const`, '')
  return out.join('\n')
}

/** Reads and parses openapi.yaml. */
export function readSpec (): Json {
  return parse(readFileSync(SPEC_PATH, 'utf8'))
}

/**
 * The client's types (src/client/schema.ts): paths, operations and components as
 * openapi-typescript derives them from the same spec, for openapi-fetch.
 */
export async function generateClientTypes (): Promise<string> {
  const ast = await openapiTS(pathToFileURL(SPEC_PATH))
  return `// GENERATED by scripts/gen-contract.ts (openapi-typescript) from openapi.yaml. Do not edit: run \`npm run contract\`.\n${astToString(ast)}`
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const files: Array<[string, string]> = [[GENERATED_PATH, generate(readSpec())], [CLIENT_TYPES_PATH, await generateClientTypes()]]
  const check = process.argv.includes('--check')
  for (const [path, text] of files) {
    const name = relative(ROOT, path)
    if (!check) {
      writeFileSync(path, text)
      console.log(`wrote ${name}`)
    } else if (!existsSync(path) || readFileSync(path, 'utf8') !== text) {
      console.error(`${name} is stale: run \`npm run contract\` and commit the result`)
      process.exitCode = 1
    } else {
      console.log(`${name} is up to date`)
    }
  }
}
