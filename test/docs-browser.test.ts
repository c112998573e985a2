import tap from 'tap'
import { launchBrowser } from './helpers/browser.js'
import { createUser, importLines } from './helpers/build.js'
import { buildExportApp } from './helpers/exports.js'

tap.test('/docs in a real browser: no console error, authorize, "Try it out" starts an export on this server', async (t) => {
  const app = await buildExportApp(t)
  const u = await createUser(app, ['acme'])
  t.equal((await importLines(app, u.headers, 'acme', 'users', ['{"id":"a"}'])).statusCode, 200)
  // Not port 3000: "Try it out" must go to the server the page came from.
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const browser = await launchBrowser(t)
  const page = await browser.newPage()
  const problems: string[] = []
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))

  await page.goto(`${base}/docs`)
  await page.waitForSelector('#operations-exports-startExport', { timeout: 60_000 })
  t.match(await page.locator('.servers select').inputValue(), base, 'the server list names this server')

  await page.click('button.authorize')
  const userToken = page.locator('.auth-container', { hasText: 'userToken' })
  await userToken.locator('input').fill(u.token)
  await userToken.locator('button.authorize').click()
  await page.click('button.btn-done')

  const op = page.locator('#operations-exports-startExport')
  await op.locator('.opblock-summary').click()
  await op.locator('button.try-out__btn').click()
  await op.locator('tr[data-param-name="firmId"] input').fill('acme')
  await op.locator('tr[data-param-name="objectType"] input').fill('users')
  await op.locator('button.execute').click()
  const status = op.locator('.live-responses-table tr.response .response-col_status').first()
  await status.waitFor({ timeout: 60_000 })
  t.equal((await status.innerText()).trim(), '200', 'the export starts')
  const body = await op.locator('.live-responses-table tr.response .response-col_description pre').first().innerText()
  t.match(JSON.parse(body), { requestId: /^export-[0-9a-f-]{36}$/ }, `with a request id: ${body}`)
  t.equal(await op.locator('.request-url pre').innerText(), `${base}/api/v1/idm/acme/users/export`, 'sent to this server')
  t.same(problems, [], 'the browser console stays clean (CSP included)')
})
