/**
 * The black-box check's reporting: each check prints one ok/FAIL line, and `finish`
 * prints the tally and exits (1 on any failure). A check that makes the rest pointless
 * calls `finish` at once.
 */
import { performance } from 'node:perf_hooks'
import { fmt } from '../format.js'
import type { JsonReply } from '../http.js'

const failures: string[] = []
let passed = 0
const tStart = performance.now()

/** Records and prints one check; `evidence` is shown when it fails. */
export function check (ok: boolean, what: string, evidence?: unknown): boolean {
  if (ok) {
    passed++
    console.log(`  ok   ${what}`)
  } else {
    const ev = evidence === undefined ? '' : ` — ${typeof evidence === 'string' ? evidence : JSON.stringify(evidence)}`
    failures.push(`${what}${ev}`)
    console.log(`  FAIL ${what}${ev}`)
  }
  return ok
}

/** Something worth knowing that is neither a pass nor a failure. */
export function note (msg: string): void {
  console.log(`  note ${msg}`)
}

/** A heading. */
export function section (title: string): void {
  console.log(`\n== ${title}`)
}

/** Checks an RFC 9457 problem with this status and code. */
export function checkProblem (res: JsonReply, status: number, code: string, what: string): boolean {
  const ct = res.headers.get('content-type') ?? ''
  const j = res.json ?? {}
  const ok = res.status === status && ct.startsWith('application/problem+json') &&
    j.status === status && j.code === code && typeof j.type === 'string' && typeof j.title === 'string' && typeof j.detail === 'string'
  return check(ok, `${what} → ${status} ${code} problem+json`, { status: res.status, contentType: ct, body: res.text.slice(0, 300) })
}

/** Prints the tally and one PASS/FAIL line, and exits. */
export function finish (): never {
  const secs = (performance.now() - tStart) / 1000
  console.log(`\n${passed} checks passed, ${failures.length} failed, ${fmt(secs, 1)} s in all`)
  if (failures.length) {
    console.log('failures:')
    for (const f of failures) console.log(`  - ${f.slice(0, 600)}`)
    console.log('FAIL')
    process.exit(1)
  }
  console.log('PASS')
  process.exit(0)
}
