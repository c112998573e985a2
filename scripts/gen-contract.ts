/**
 * Derives src/contract/generated.ts (TypeBox schemas, their static types and one route
 * definition per operationId) from openapi.yaml, the hand-written source of truth.
 *
 *   npm run contract          rewrite the generated file
 *   npm run contract -- --check   exit 1 if the committed file is stale
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { parse } from 'yaml'

type Json = Record<string, any>

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const SPEC_PATH = join(ROOT, 'openapi.yaml')
export const GENERATED_PATH = join(ROOT, 'src/contract/generated.ts')

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

function options (schema: Json, extra: Json = {}): string {
  const opts: Json = { ...extra }
  for (const k of PASS_THROUGH) if (k in schema) opts[k] = schema[k]
  return Object.keys(opts).length ? ', ' + JSON.stringify(opts) : ''
}

/** Renders one JSON Schema (OpenAPI 3.1 dialect) as TypeBox builder code. */
export function toTypeBox (schema: Json): string {
  for (const k of Object.keys(schema)) {
    if (DOC_ONLY.has(k)) continue
    if (!['type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'const',
      'oneOf', 'anyOf', 'allOf', '$ref', 'title', ...PASS_THROUGH].includes(k)) {
      throw new Error(`unsupported schema keyword '${k}'`)
    }
  }
  if (schema.$ref) return refName(schema.$ref)
  if (schema.oneOf || schema.anyOf) {
    const parts = (schema.oneOf ?? schema.anyOf).map(toTypeBox)
    return `Type.Union([${parts.join(', ')}]${options(schema)})`
  }
  if (schema.allOf) return `Type.Intersect([${schema.allOf.map(toTypeBox).join(', ')}]${options(schema)})`
  if ('const' in schema) return `Type.Literal(${JSON.stringify(schema.const)}${options(schema)})`
  if (schema.enum) {
    return `Type.Union([${schema.enum.map((v: unknown) => `Type.Literal(${JSON.stringify(v)})`).join(', ')}]${options(schema)})`
  }
  if (Array.isArray(schema.type)) {
    const parts = schema.type.map((t: string) => toTypeBox({ ...schema, type: t }))
    return `Type.Union([${parts.join(', ')}])`
  }
  switch (schema.type) {
    case 'string': return `Type.String(${options(schema).slice(2)})`
    case 'integer': return `Type.Integer(${options(schema).slice(2)})`
    case 'number': return `Type.Number(${options(schema).slice(2)})`
    case 'boolean': return `Type.Boolean(${options(schema).slice(2)})`
    case 'null': return 'Type.Null()'
    case 'array': return `Type.Array(${toTypeBox(schema.items ?? {})}${options(schema)})`
    case 'object': {
      const required = new Set<string>(schema.required ?? [])
      const props = Object.entries<Json>(schema.properties ?? {}).map(([name, s]) => {
        const t = toTypeBox(s)
        return `${JSON.stringify(name)}: ${required.has(name) ? t : `Type.Optional(${t})`}`
      })
      const extra: Json = {}
      if (schema.additionalProperties === false) extra.additionalProperties = false
      if (schema.additionalProperties === true) extra.additionalProperties = true
      return `Type.Object({ ${props.join(', ')} }${options(schema, extra)})`
    }
    case undefined: return 'Type.Unknown()'
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

/** Builds the text of src/contract/generated.ts from the parsed spec. */
export function generate (spec: Json): string {
  const out: string[] = [
    '// GENERATED by scripts/gen-contract.ts from openapi.yaml. Do not edit: run `npm run contract`.',
    "import { Type, type Static } from '@sinclair/typebox'",
    '',
  ]
  const schemas = spec.components?.schemas ?? {}
  for (const name of ordered(schemas)) {
    out.push(`export const ${name} = ${toTypeBox(schemas[name])}`)
    out.push(`export type ${name} = Static<typeof ${name}>`)
  }
  const codes: string[] = schemas.ErrorCode?.enum ?? []
  out.push('', `/** The spec's ErrorCode enum, in order. */`)
  out.push(`export const errorCodes = ${JSON.stringify(codes)} as const`)

  out.push('', '/** One Fastify route definition per operationId: method, URL and request/response schemas. */')
  out.push('export const operations = {')
  for (const [path, item] of Object.entries<Json>(spec.paths)) {
    for (const method of METHODS) {
      const op = item[method]
      if (!op) continue
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p) => resolveParam(spec, p))
      const schemaParts: string[] = []
      const group = (where: string): string | undefined => {
        const ps = params.filter((p) => p.in === where)
        if (!ps.length) return undefined
        const props = ps.map((p) => {
          const t = toTypeBox(p.schema)
          // Node lower-cases header names.
          const name = where === 'header' ? p.name.toLowerCase() : p.name
          return `${JSON.stringify(name)}: ${p.required ? t : `Type.Optional(${t})`}`
        })
        return `Type.Object({ ${props.join(', ')} })`
      }
      const pathParams = group('path')
      if (pathParams) schemaParts.push(`params: ${pathParams}`)
      const query = group('query')
      if (query) schemaParts.push(`querystring: ${query}`)
      const headers = group('header')
      if (headers) schemaParts.push(`headers: ${headers}`)
      const jsonBody = op.requestBody?.content?.['application/json']?.schema
      if (jsonBody) schemaParts.push(`body: ${toTypeBox(jsonBody)}`)
      const responses: string[] = []
      for (const [status, res] of Object.entries<Json>(op.responses ?? {})) {
        const s = res.content?.['application/json']?.schema
        if (/^2\d\d$/.test(status) && s) responses.push(`${status}: ${toTypeBox(s)}`)
      }
      if (responses.length) schemaParts.push(`response: { ${responses.join(', ')} }`)
      const url = path.replace(/\{([^}]+)\}/g, ':$1')
      const security: Json[] = op.security ?? spec.security ?? []
      const scheme = security.length ? Object.keys(security[0])[0] : 'none'
      out.push(`  ${op.operationId}: {`)
      out.push(`    method: ${JSON.stringify(method.toUpperCase())},`)
      out.push(`    url: ${JSON.stringify(url)},`)
      const optionalBody = jsonBody && op.requestBody.required !== true ? ', optionalBody: true' : ''
      out.push(`    config: { security: ${JSON.stringify(scheme)}${optionalBody} },`)
      out.push(`    schema: { operationId: ${JSON.stringify(op.operationId)}${schemaParts.map((p) => `, ${p}`).join('')} },`)
      out.push('  },')
    }
  }
  out.push('} as const', '')
  out.push('export type OperationId = keyof typeof operations', '')
  return out.join('\n')
}

/** Reads and parses openapi.yaml. */
export function readSpec (): Json {
  return parse(readFileSync(SPEC_PATH, 'utf8'))
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = generate(readSpec())
  if (process.argv.includes('--check')) {
    const current = readFileSync(GENERATED_PATH, 'utf8')
    if (current !== text) {
      console.error('src/contract/generated.ts is stale: run `npm run contract` and commit the result')
      process.exit(1)
    }
    console.log('src/contract/generated.ts is up to date')
  } else {
    writeFileSync(GENERATED_PATH, text)
    console.log(`wrote ${GENERATED_PATH}`)
  }
}
