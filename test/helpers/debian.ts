import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'

/**
 * A program from Debian's packages that a test drives (Chromium, jq): installed when it is
 * missing and this is root on a Debian machine (as on a fresh CI machine); otherwise a
 * clear error saying what to install.
 */
export function ensureDebianPackage (binary: string, pkg: string, why: string): string {
  if (existsSync(binary)) return binary
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' })
    execFileSync('apt-get', ['install', '-y', '-qq', pkg], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    if (existsSync(binary)) return binary
  }
  throw new Error(`${why}: install Debian's ${pkg} package (apt-get install ${pkg}) so that ${binary} exists`)
}
