/** The table of checks that ends a benchmark's report. */

/** One check: what it says, whether it held, and what was seen. */
export type Check = [name: string, ok: boolean, detail: string]

/**
 * Appends the checks to the report's lines as a Markdown table and prints the report. A
 * failed check sets exit code 1, so that a benchmark run in a script fails loudly.
 */
export function printWithChecks (out: string[], checks: Check[]): void {
  out.push('', '| check | result | detail |', '|---|---|---|')
  for (const [name, ok, detail] of checks) out.push(`| ${name} | ${ok ? 'OK' : '**FAIL**'} | ${detail} |`)
  console.log(out.join('\n'))
  if (checks.some(([, ok]) => !ok)) process.exitCode = 1
}
