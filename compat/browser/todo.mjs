// Drives examples/todo (PAGE_URL) in two windows of the OS's Chromium
// (CHROMIUM) through puppeteer-core; see ../todo_test.go. Prints the
// figures as JSON and exits 1 when a check failed. CONTROL's POST /load
// writes 1,000 todos/s for 3 s; README_URL is the README's browser
// snippet; SCREENSHOT, if set, is where to save the second window.
import puppeteer from 'puppeteer-core'

const { CHROMIUM, PAGE_URL, CONTROL, SCREENSHOT, README_URL } = process.env
if (!CHROMIUM || !PAGE_URL || !CONTROL || !README_URL) {
  console.error('compat/browser/todo.mjs: set CHROMIUM, PAGE_URL, CONTROL and README_URL')
  process.exit(2)
}
const EDITS = 200

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? +s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)].toFixed(1) : NaN
}
const dist = (xs) => ({ n: xs.length, p50: pct(xs, 50), p90: pct(xs, 90), p99: pct(xs, 99), max: pct(xs, 100) })

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    // Two windows, neither in the background.
    '--disable-renderer-backgrounding', '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows'],
})
const failures = []
const check = (ok, what) => ok || failures.push(what)
const result = {}
try {
  // Two windows (browser contexts), both visible: tabs of one window
  // would leave all but one hidden, without animation frames.
  const pages = [await browser.newPage(), await (await browser.createBrowserContext()).newPage()]
  for (const [i, p] of pages.entries()) {
    p.on('console', (m) => console.log(`page ${i}:`, m.text()))
    p.on('pageerror', (e) => failures.push(`page ${i}: ${e.message}`))
    await p.setViewport({ width: 720, height: 560 })
    await p.evaluateOnNewDocument(() => {
      window.__drawn = new Map() // id -> [time first drawn (not pending), time its change came]
      window.__renders = []
      addEventListener('todos:render', ({ detail }) => {
        window.__renders.push(detail)
        for (const d of detail.drawn) if (!d.pending && !window.__drawn.has(d.id)) window.__drawn.set(d.id, [detail.time, d.got, d.at])
      })
    })
    await p.goto(PAGE_URL)
  }
  const [a, b] = pages
  for (const p of pages) await p.waitForFunction(() => document.getElementById('state').textContent === 'live', { timeout: 10_000 })

  // 1. Edits through a's form, one at a time: each shows in b before the
  // next is made. This machine's CPU is shared (two cores, other tests):
  // a round whose p99 misses is run once more, and both are reported.
  let n = 0
  const round = async () => {
    const sent = {}
    for (let i = 0; i < EDITS; i++, n++) {
      const [id, t] = await a.evaluate((title) => {
        const t = performance.timeOrigin + performance.now()
        document.getElementById('title').value = title
        document.getElementById('add').requestSubmit()
        // The optimistic write is in a's state at once.
        return [[...window.todoPage.todos.items].find(([, v]) => v.title === title)?.[0], t]
      }, `todo ${n}`)
      if (!id) throw new Error(`todo ${n} was not shown at once in a`)
      sent[id] = t
      await b.waitForFunction((id) => window.__drawn.has(id), { timeout: 5_000, polling: 'mutation' }, id)
    }
    const ids = Object.keys(sent)
    await a.waitForFunction((ids) => ids.every((id) => window.__drawn.has(id)), { timeout: 15_000, polling: 50 }, ids)
    const drawnB = new Map(await b.evaluate(() => [...window.__drawn]))
    return {
      editToOtherWindowMs: dist(ids.map((id) => drawnB.get(id)[0] - sent[id])),
      // Where the time goes: from the submit to todos::add writing, and
      // from there to b receiving the change.
      editToWriteMs: dist(ids.map((id) => drawnB.get(id)[2] - sent[id])),
      writeToOtherWindowMs: dist(ids.map((id) => drawnB.get(id)[1] - drawnB.get(id)[2])),
    }
  }
  result.edits = [await round()]
  if (!(result.edits[0].editToOtherWindowMs.p99 < 100)) result.edits.push(await round())
  const edit = result.edits.at(-1).editToOtherWindowMs
  check(edit.n === EDITS && edit.p99 < 100, `edit to the other window: p99 ${edit.p99} ms (want < 100)`)
  const titles = await b.evaluate(() => [...document.querySelectorAll('#list li label')].map((l) => l.textContent))
  check(titles.length === n && titles.every((t, i) => t === `todo ${i}`), `b shows ${titles.length} todos, in order: ${titles.slice(0, 3)}…`)
  check(await a.evaluate(() => document.querySelectorAll('#list li.pending').length === 0), 'a still shows pending todos')
  if (SCREENSHOT) await b.screenshot({ path: SCREENSHOT })

  // 2. 1,000 writes/s for 3 s to b alone, which measures commit to render.
  await a.close()
  const from = await b.evaluate(() => window.__renders.length)
  const load = await (await fetch(CONTROL + '/load', { method: 'POST' })).json()
  await b.waitForFunction((seq) => window.__renders.at(-1)?.seq >= seq, { timeout: 15_000, polling: 20 }, load.lastSeq)
  const renders = await b.evaluate((from) => window.__renders.slice(from), from)
  const lags = [] // [commit time, ms to render, ms to receive]
  for (const r of renders) for (const d of r.drawn) if (d.id.startsWith('load-')) lags.push([d.at, r.time - d.at, d.got - d.at])
  const last = renders.find((r) => r.seq >= load.lastSeq)
  const t0 = lags[0]?.[0]
  const lastSecond = lags.filter(([at]) => at >= t0 + (load.seconds - 1) * 1000).map(([, l]) => l)
  result.load = {
    writes: load.sent,
    writesPerSecond: Math.round(load.sent / load.seconds),
    frames: renders.length,
    changesDrawn: lags.length,
    commitToRenderMs: dist(lags.map(([, l]) => l)),
    commitToReceiveMs: dist(lags.map(([, , l]) => l)),
    lastSecondMs: dist(lastSecond),
    lastWriteDrawnMsAfterLoadEnd: +(last.time - load.end).toFixed(1),
  }
  // Loosely: the page drains what it got, it does not fall ever further behind.
  check(last.time - load.end < 2000, `the last write was drawn ${last.time - load.end} ms after the load ended (want < 2000)`)

  // 3. The README's snippet, in a window of its own: it logs its snapshot,
  // then its own write, which b shows too, and its presence: one member.
  // In a second tab of that window (two tabs, one member), the same
  // member, and still one in the first tab.
  const context = await browser.createBrowserContext()
  const tab = async (name) => {
    const page = await context.newPage()
    const logged = [] // what it logs: the change's type and the last item
    const here = [] // what it logs of presence: the members
    page.on('console', async (m) => {
      // A message still being read as the browser closes has no value to read.
      const [type, items] = await Promise.all(m.args().map((a) => a.jsonValue())).catch(() => [])
      if (type === 'here') here.push(items)
      else if (Array.isArray(items)) logged.push(`${type} ${JSON.stringify(items.at(-1))}`)
    })
    page.on('pageerror', (e) => failures.push(`README snippet (${name}): ${e.message}`))
    await page.goto(README_URL)
    return { logged, here }
  }
  const readme = await tab('first tab')
  const logged = readme.logged
  await b.waitForFunction(() => window.__drawn.has('t1'), { timeout: 10_000, polling: 50 })
  for (const deadline = Date.now() + 5000; (logged.length < 2 || !readme.here.length) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20))
  result.readmeLogged = logged
  // The write may land before the join: then the snapshot has it already.
  const milk = logged.findIndex((l) => l.endsWith(' {"title":"milk"}'))
  check(logged[0]?.startsWith('snapshot ') && (milk === 0 || logged[milk] === 'create {"title":"milk"}'), 'the README snippet logged: ' + logged.join(', '))
  const second = await tab('second tab')
  for (const deadline = Date.now() + 5000; !second.here.length && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20))
  const shown = (t) => JSON.stringify((t.here.at(-1) || []).map((m) => [m.identity.startsWith('anon:'), m.connections, m.anonymous]))
  result.readmePresence = { firstTab: readme.here.at(-1), secondTab: second.here.at(-1) }
  check(
    shown(readme) === '[[true,1,true]]' && shown(second) === shown(readme) && readme.here.at(-1)[0].identity === second.here.at(-1)[0].identity,
    'the README snippet in two tabs: one member in each, the same; they logged ' + JSON.stringify(result.readmePresence),
  )
} catch (e) {
  failures.push(String(e.stack || e))
} finally {
  await browser.close()
}
console.log(JSON.stringify(result, null, 1))
if (failures.length) console.error('FAILED:\n' + failures.join('\n'))
process.exit(failures.length ? 1 : 0)
