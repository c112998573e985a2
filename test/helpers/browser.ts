import { chromium, type Browser } from 'playwright-core'
import { ensureDebianPackage } from './debian.js'

/** A headless Chromium, closed in teardown. */
export async function launchBrowser (t: { teardown: (fn: () => unknown) => void }): Promise<Browser> {
  const browser = await chromium.launch({
    // Debian's Chromium: the only browser the tests use (playwright never downloads one).
    executablePath: ensureDebianPackage('/usr/bin/chromium', 'chromium', 'the docs test drives a real browser'),
    // Root has no sandbox here; the rest keeps Chromium off a network it cannot reach.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
  t.teardown(() => browser.close())
  return browser
}
