import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** Debian's Chromium: the only browser the tests use (playwright never downloads one). */
const CHROMIUM = '/usr/bin/chromium'

/**
 * Debian's chromium package, installed when missing and this is root on a Debian machine
 * (as on a fresh CI machine); otherwise a clear error saying what to install.
 */
function ensureChromium (): string {
  if (existsSync(CHROMIUM)) return CHROMIUM
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' })
    execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    if (existsSync(CHROMIUM)) return CHROMIUM
  }
  throw new Error(`the docs test drives a real browser: install Debian's chromium package (apt-get install chromium) so that ${CHROMIUM} exists`)
}

/** A headless Chromium, closed in teardown. */
export async function launchBrowser (t: { teardown: (fn: () => unknown) => void }): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: ensureChromium(),
    // Root has no sandbox here; the rest keeps Chromium off a network it cannot reach.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
  t.teardown(() => browser.close())
  return browser
}
