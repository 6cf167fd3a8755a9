// Drives the console (CONSOLE_URL) in the OS's Chromium (CHROMIUM) through
// puppeteer-core; see ../console_test.go. CONTROL?do=function|trigger|worker
// makes the writes the page cannot make itself; POLICY_URL is the console
// of an engine whose iii listener admits by token; OPEN_URL that of an
// engine whose HTTP listener is not on loopback. SCREENSHOTS, if set, is
// a directory for a screenshot of each page. Prints the delays measured and
// exits 1 when a check failed.
import puppeteer from 'puppeteer-core'

const { CHROMIUM, CONSOLE_URL, STREAM_URL, CONTROL, POLICY_URL, OPEN_URL, SCREENSHOTS } = process.env
if (!CHROMIUM || !CONSOLE_URL || !CONTROL || !POLICY_URL || !OPEN_URL) {
  console.error('compat/browser/console.mjs: set CHROMIUM, CONSOLE_URL, CONTROL, POLICY_URL and OPEN_URL')
  process.exit(2)
}
const LIVE_MS = 1000

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
})
const failures = []
const delays = {}
const check = (ok, what) => ok || failures.push(what)

async function open(url, strict = false) {
  const ctx = await browser.createBrowserContext()
  const page = await ctx.newPage()
  // puppeteer's waitForFunction evaluates strings in the page, which the
  // console's CSP refuses; the strict check below keeps the CSP on.
  if (!strict) await page.setBypassCSP(true)
  const errors = []
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()))
  page.on('pageerror', (e) => errors.push(e.message))
  await page.setViewport({ width: 1280, height: 800 })
  await page.goto(url)
  await page.waitForFunction(() => document.getElementById('state')?.textContent === 'live', { timeout: 10_000 })
  return { page, errors }
}

// has waits until the page's text includes s.
const has = (page, s, timeout = 5000) =>
  page.waitForFunction((s) => document.getElementById('main').textContent.includes(s), { timeout, polling: 'mutation' }, s)

// live makes a write, then requires it on the page within LIVE_MS.
async function live(page, what, write, seen) {
  await write()
  const t0 = Date.now()
  try {
    await page.waitForFunction(seen.f, { timeout: LIVE_MS, polling: 'raf' }, ...(seen.args || []))
    delays[what] = Date.now() - t0
  } catch {
    failures.push(`${what}: not shown within ${LIVE_MS} ms of the write`)
  }
}
const text = (s) => ({ f: (s) => document.getElementById('main').textContent.includes(s), args: [s] })
const control = (what) => fetch(`${CONTROL}?do=${what}`).then((r) => check(r.ok, `control ${what}: ${r.status}`))
const call = (page, fn, payload) => page.evaluate((fn, p) => window.trineConsole.call(fn, p), fn, payload)
// click clicks the first row (or button) whose text includes s.
const click = (page, sel, s) =>
  page.evaluate((sel, s) => {
    const el = [...document.querySelectorAll(sel)].find((e) => e.textContent.includes(s))
    if (!el) throw new Error(`no ${sel} with ${s}`)
    el.click()
  }, sel, s)
async function visit(page, name, ready) {
  await page.evaluate((n) => (location.hash = n), name)
  await has(page, ready)
}
const shot = (page, name) => SCREENSHOTS && page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true })

try {
  const { page, errors } = await open(CONSOLE_URL)

  // Functions: the list, a new function, a call, a failing call.
  await visit(page, 'functions', 'test::echo')
  await live(page, 'functions: a new function', () => control('function'), text('test::fresh'))
  await page.$eval('#call-fn', (e) => (e.value = 'test::echo'))
  await page.$eval('#call-payload', (e) => (e.value = '{"hello": "console"}'))
  await page.click('#call-run')
  await page.waitForFunction(() => document.getElementById('call-result').textContent.includes('"hello": "console"'), { timeout: 5000 })
  await click(page, 'tr', 'test::echo')
  await has(page, '"function_id": "test::echo"')
  await shot(page, 'functions')
  await page.$eval('#call-fn', (e) => (e.value = 'test::fail'))
  await page.click('#call-run')
  await page.waitForFunction(() => document.querySelector('#call-result [data-code]')?.textContent.includes('always fails'), { timeout: 5000 })

  // Workers: a new worker, with what it serves.
  await visit(page, 'workers', 'console-test')
  await live(page, 'workers: a new worker', () => control('worker'), text('late-worker'))
  check(await page.evaluate(() => document.getElementById('main').textContent.includes('late::hello')), 'workers: late-worker serves late::hello')
  check(await page.evaluate(() => [...document.querySelectorAll('tr')].some((r) => r.textContent.includes('late-worker') && r.cells[2].textContent === 'grpc')),
    'workers: late-worker shows its transport, grpc')
  await shot(page, 'workers')

  // Triggers: status, a trigger waiting for its provider, a new trigger.
  await visit(page, 'triggers', 'waiting_for_provider')
  await has(page, 'orphaned')
  await live(page, 'triggers: a new trigger', () => control('trigger'), text('tock'))
  await shot(page, 'triggers')
  await live(page, 'triggers: an orphan released', () => click(page, 'button.release', 'Release'),
    { f: () => ![...document.querySelectorAll('tr')].some((r) => r.cells[0]?.textContent === 'gate') })

  // Streams: a new stream, its group live, an edit with a conflict.
  await page.evaluate(() => (location.hash = 'streams'))
  await live(page, 'streams: a new stream', () => call(page, 'stream::set', { stream_name: 'chat', group_id: 'room', item_id: 'm1', data: { text: 'hi' } }), text('chat'))
  await click(page, 'tr', 'chat')
  await has(page, 'room')
  await click(page, 'tr', 'room')
  await page.waitForFunction(() => document.getElementById('items')?.textContent.includes('m1'), { timeout: 5000 })
  await live(page, 'streams: an item written', () => call(page, 'stream::set', { stream_name: 'chat', group_id: 'room', item_id: 'm2', data: { text: 'live' } }),
    { f: () => document.getElementById('items').textContent.includes('"live"') })
  await click(page, '#items tr', 'm1')
  await page.waitForSelector('#edit-value')
  await page.$eval('#edit-value', (e) => (e.value = '{"text": "edited"}'))
  await call(page, 'stream::set', { stream_name: 'chat', group_id: 'room', item_id: 'm1', data: { text: 'meanwhile' } })
  await page.click('#edit-save')
  await page.waitForFunction(() => document.querySelector('#edit-result [data-code="conflict"]'), { timeout: 5000 })
  // A member joins with presence (a raw socket, as a page would): the
  // group's head shows it (stream::presence).
  await live(page, 'streams: a presence member', () => page.evaluate(async (stream) => {
    const ws = (window.member = new WebSocket(stream + '/'))
    await new Promise((ok) => (ws.onopen = ok))
    ws.send(JSON.stringify({ type: 'join', data: { subscriptionId: 'p1', streamName: 'chat', groupId: 'room', presence: true } }))
  }, STREAM_URL), { f: () => /presence 1\b/.test(document.getElementById('group-head').textContent) })
  // The group's figures (stream::group_info): three events in its history.
  await page.waitForFunction(() => document.getElementById('group-head').textContent.includes('history 3/1000'), { timeout: 2000 })
    .catch(() => failures.push('streams: the group head does not show its history of 3 events'))
  // The stream's contract and its history (engine::streams::schema).
  await call(page, 'stream::define', { stream_name: 'chat', version: 1, item_schema: { type: 'object' } })
  await call(page, 'stream::define', { stream_name: 'chat', version: 2, compatibility: 'NONE', item_schema: { type: 'object', properties: { text: { type: 'string' } } } })
  await page.waitForFunction(() => /contract v2 NONE/.test(document.getElementById('contract')?.textContent) && document.querySelectorAll('#contract tr').length === 3, { timeout: 5000 })
    .catch(() => failures.push('streams: the stream does not show its contract v2 and a history of 2'))
  await shot(page, 'streams')
  // A stream whose items were stored before its first contract, and
  // writes the contract refuses: the page lists the refusals
  // (engine::streams::refusals) and marks the stored item that fails
  // (engine::streams::validate), with the pointer and rule.
  await call(page, 'stream::set', { stream_name: 'typed', group_id: 'inbox', item_id: 'early', data: { title: 5 } })
  await call(page, 'stream::set', { stream_name: 'typed', group_id: 'inbox', item_id: 'fine', data: { title: 'ok' } })
  await call(page, 'stream::define', { stream_name: 'typed', version: 1, item_schema: { type: 'object', properties: { title: { type: 'string' } }, required: ['title'] } })
  for (const [id, data] of [['bad', { title: 42 }], ['empty', {}]]) {
    const refused = await call(page, 'stream::set', { stream_name: 'typed', group_id: 'inbox', item_id: id, data }).then(() => false, (e) => /nothing was written/.test(String(e)))
    check(refused, `streams: a write the contract refuses (${id}) was not refused`)
  }
  await has(page, 'typed')
  await click(page, '#page-streams tr', 'typed')
  await has(page, 'inbox')
  await click(page, '#page-streams tr', 'inbox')
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#refusals tbody tr')]
    return rows.length === 2 && rows[0].textContent.includes('/title: required') && rows[1].textContent.includes('/title: expected string, got number') && rows[1].textContent.includes('bad')
  }, { timeout: 5000 }).catch(() => failures.push('streams: the recent refusals of typed are not listed, newest first, with their pointer and rule'))
  await page.waitForFunction(() => {
    const bad = [...document.querySelectorAll('#items tr.fails')]
    return bad.length === 1 && bad[0].cells[0].textContent === 'early' && bad[0].textContent.includes('/title: expected string, got number')
  }, { timeout: 5000 }).catch(() => failures.push('streams: the stored item that fails the contract (early) is not marked with its pointer and rule, or another is'))
  await page.waitForFunction(() => /contract v1 BACKWARD/.test(document.getElementById('contract')?.textContent), { timeout: 5000 })
    .catch(() => failures.push('streams: typed does not show its own contract, v1'))
  await shot(page, 'streams-contract')

  // Queues: a job that fails lands in the dead letters.
  await visit(page, 'queues', 'jobs')
  const dead = () => [...document.querySelectorAll('tr')].find((r) => r.cells[0]?.textContent === 'jobs')?.cells[5]?.textContent
  await live(page, 'queues: a dead letter', () => call(page, 'engine::queue::enqueue', { queue: 'jobs', function_id: 'test::fail', payload: { n: 1 } }),
    { f: (d) => new Function('return ' + d)()() === '1', args: [dead.toString()] })
  await click(page, 'tr', 'jobs')
  await page.waitForFunction(() => document.getElementById('dead-letters').textContent.includes('always fails'), { timeout: 5000 })
  await shot(page, 'queues')

  // Cron: the schedule, and its last fire moving.
  await visit(page, 'cron', 'tick')
  const last = () => [...document.querySelectorAll('tr')].find((r) => r.cells[0]?.textContent === 'tick')?.cells[3]?.textContent
  const was = await page.evaluate(last)
  await live(page, 'cron: a fire', async () => {}, { f: (l, was) => new Function('return ' + l)()() !== was, args: [last.toString(), was] })
  await shot(page, 'cron')

  // Live figures: calls show up in calls/s.
  await visit(page, 'figures', 'calls/s')
  await live(page, 'figures: calls', () => Promise.all(Array.from({ length: 50 }, (_, i) => call(page, 'test::echo', { i }))),
    { f: () => Number(document.querySelector('[data-figure="calls/s"]')?.textContent) > 0 })
  await page.waitForFunction(() => document.getElementById('main').textContent.includes('test::echo'), { timeout: 2000 }).catch(() => failures.push('figures: test::echo not listed by function'))
  if (SCREENSHOTS) // a few seconds of chart
    await page.waitForFunction(() => document.querySelector('svg.chart path').getAttribute('d').split('L').length >= 10, { timeout: 10_000 })
  await shot(page, 'figures')
  check(errors.length === 0, `console errors: ${errors.join(' | ')}`)

  // A listener with a policy: the viewer's token may not call
  // test::secret, the ops token may.
  for (const [tok, want] of [['viewer', 'forbidden'], ['ops', 'the secret']]) {
    const p = await open(POLICY_URL + '?token=' + tok)
    await has(p.page, 'engine::functions::list')
    await p.page.$eval('#call-fn', (e) => (e.value = 'test::secret'))
    await p.page.click('#call-run')
    await p.page.waitForFunction((w) => document.getElementById('call-result').textContent.includes(w), { timeout: 5000 }, want)
      .catch(() => failures.push(`policy: ${tok} calling test::secret did not show ${want}`))
    if (tok === 'viewer') {
      check(await p.page.$('#call-result [data-code="forbidden"]'), 'policy: the refusal carries its code')
      await shot(p.page, 'refused')
    }
    check(p.errors.length === 0, `policy ${tok}: console errors: ${p.errors.join(' | ')}`)
  }
  // With its Content-Security-Policy on, the console goes live with no
  // console error (the client's timer Worker and the listeners allowed).
  {
    const ctx = await browser.createBrowserContext()
    const page = await ctx.newPage()
    const errors = []
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()))
    page.on('pageerror', (e) => errors.push(e.message))
    const res = await page.goto(CONSOLE_URL + '#streams')
    check(/script-src 'self'/.test(res.headers()['content-security-policy'] || ''), 'the console is served without its CSP')
    let state = ''
    for (const t0 = Date.now(); Date.now() - t0 < 10_000 && state !== 'live'; await new Promise((ok) => setTimeout(ok, 50)))
      state = await page.evaluate(() => document.getElementById('state')?.textContent)
    check(state === 'live', `with its CSP the console is ${state}, not live`)
    check(!(await page.evaluate(() => document.querySelector('meta[name="trine-console"]'))), 'the settings stay in the DOM')
    check(errors.length === 0, `with its CSP: console errors: ${errors.join(' | ')}`)
  }
  // Not on loopback, no console token: refused, and no page.
  {
    const page = await (await browser.createBrowserContext()).newPage()
    const res = await page.goto(OPEN_URL)
    check(res.status() === 401, `non-loopback listener without a token: ${res.status()}, want 401`)
    check(!(await page.$('#main')), 'non-loopback listener without a token: the console page was served')
    await shot(page, 'non-loopback')
  }
} catch (e) {
  failures.push(String(e.stack || e))
} finally {
  await browser.close()
}
console.log(JSON.stringify({ delaysMs: delays }))
if (failures.length) {
  console.error('FAIL:\n' + failures.join('\n'))
  process.exit(1)
}
