// Drives the OS's Chromium (CHROMIUM) headless through puppeteer-core to
// PAGE_URL, a page served from another origin than the engine's stream
// gateway, and prints what the page found (window.__result, JSON). Exits
// 1 when a check failed. See ../browser_test.go.
import puppeteer from 'puppeteer-core'

const { CHROMIUM, PAGE_URL } = process.env
if (!CHROMIUM || !PAGE_URL) {
  console.error('compat/browser: set CHROMIUM and PAGE_URL')
  process.exit(2)
}
const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
})
let failed = true
try {
  const page = await browser.newPage()
  page.on('console', (m) => console.log('page:', m.text()))
  await page.goto(PAGE_URL)
  const handle = await page.waitForFunction(() => window.__result, { timeout: 30_000 })
  const res = await handle.jsonValue()
  console.log(JSON.stringify(res))
  failed = Object.values(res).some((v) => v !== 'ok')
} finally {
  await browser.close()
}
process.exit(failed ? 1 : 0)
