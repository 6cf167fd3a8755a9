// Drives the OS's Chromium (CHROMIUM) headless through puppeteer-core to
// SHARE_PAGE_URL (two tabs sharing one socket), STRICT_PAGE_URL (React
// hooks under StrictMode), SSE_PAGE_URL and PAGE_URL (client.html, using the built @trine/client,
// over SSE and over a WebSocket), then hides the second
// page behind another tab, throttles its timers as Chrome's intensive
// throttling does (once a minute; headless Chromium does not do it by
// itself), asks the harness (CONTROL) to freeze the page's connection,
// and checks that the hidden page finds it dead within 10 s. Exits 1 when
// a check failed. See ../jsclient_test.go.
import puppeteer from 'puppeteer-core'

const { CHROMIUM, PAGE_URL, SSE_PAGE_URL, STRICT_PAGE_URL, SHARE_PAGE_URL, PRESENCE_PAGE_URL, CONTROL } = process.env
if (!CHROMIUM || !PAGE_URL || !SSE_PAGE_URL || !STRICT_PAGE_URL || !SHARE_PAGE_URL || !PRESENCE_PAGE_URL || !CONTROL) {
  console.error('compat/browser: set CHROMIUM, PAGE_URL, SSE_PAGE_URL, STRICT_PAGE_URL, SHARE_PAGE_URL, PRESENCE_PAGE_URL and CONTROL')
  process.exit(2)
}
const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
})
let failed = false
/**
 * Installed before a page's scripts: once window.__throttle() is called,
 * the page's timers wake at most once a minute, all together, as Chrome
 * throttles a page hidden for 5 minutes. Workers keep their own timers.
 */
function throttleTimers() {
  const { setTimeout: st, clearTimeout: ct, setInterval: si, clearInterval: ci } = window
  let on = false
  let wake = 0 // when throttled timers may run next
  const real = new Map() // our id -> the real timer's
  let n = 0
  const due = () => !on || Date.now() >= wake
  const woke = () => {
    if (on && Date.now() >= wake) wake = Date.now() + 60_000
  }
  window.__throttle = () => {
    on = true
    wake = Date.now() + 60_000
  }
  window.setTimeout = (fn, ms, ...a) => {
    const id = ++n
    const run = () => {
      if (!due()) return real.set(id, st(run, wake - Date.now()))
      woke()
      real.delete(id)
      typeof fn === 'function' ? fn(...a) : eval(fn)
    }
    real.set(id, st(run, ms))
    return id
  }
  window.clearTimeout = (id) => {
    ct(real.get(id))
    real.delete(id)
  }
  window.setInterval = (fn, ms, ...a) => {
    const id = ++n
    real.set(id, si(() => {
      if (!due()) return
      woke()
      fn(...a)
    }, ms))
    return id
  }
  window.clearInterval = (id) => {
    ci(real.get(id))
    real.delete(id)
  }
}

async function checks(url, name, setup) {
  const page = await browser.newPage()
  if (setup) await page.evaluateOnNewDocument(setup)
  page.on('console', (m) => console.log(name + ':', m.text()))
  page.on('pageerror', (e) => console.log(name + ' error:', e.message))
  await page.goto(url)
  const res = await page
    .waitForFunction(() => window.__result, { timeout: 30_000, polling: 100 }) // rAF does not run in a background tab
    .then((r) => r.jsonValue())
    .catch(() => page.evaluate(() => ({ timeout: 'states ' + window.__states + ', step ' + window.__step })))
  console.log(name, JSON.stringify(res))
  if (Object.values(res).some((v) => v !== 'ok')) failed = true
  return page
}
/**
 * strict.html: React StrictMode mounts the hooks' component, unmounts it
 * and mounts it again; one socket and one join (with presence: usePresence
 * shows this tab's member) must reach the gateway, and one leave once the
 * component is gone.
 */
async function strictMode() {
  const page = await browser.newPage()
  page.on('console', (m) => console.log('strict:', m.text()))
  page.on('pageerror', (e) => console.log('strict error:', e.message))
  await page.goto(STRICT_PAGE_URL)
  await page.waitForSelector('#messages[data-state="live"][data-seq="0"][data-members="browser:1:strict"]', { timeout: 15_000 })
  await page.evaluate(() => {
    const group = new URLSearchParams(location.search).get('group')
    return window.__client.call('stream::set', { stream_name: 'chat', group_id: group, item_id: 'm1', data: { text: 'rendered' } })
  })
  await page.waitForFunction(() => document.querySelector('#messages li')?.textContent === 'rendered', { timeout: 10_000 })
  const mounted = await page.evaluate(() => ({ sockets: window.__gatewaySockets, sent: window.__sent.join() }))
  await page.evaluate(() => window.__unmount())
  await page.waitForFunction(() => window.__sent.includes('leave'), { timeout: 10_000 })
  const gone = await page.evaluate(() => window.__sent.join())
  const res = {
    mounted: mounted.sockets === 1 && mounted.sent === 'join' ? 'ok' : JSON.stringify(mounted),
    unmounted: gone === 'join,leave' ? 'ok' : gone,
  }
  console.log('strict', JSON.stringify(res))
  if (Object.values(res).some((v) => v !== 'ok')) failed = true
  await page.close()
}

/**
 * share.html in two tabs with shareAcrossTabs: the first holds the one
 * socket, the second gets the group through it; when the first closes, the
 * second takes the socket over and its group goes on without a gap or a
 * duplicate. A third tab that crashes has its group left by the holder.
 */
async function shareAcrossTabs() {
  const open = async (name) => {
    const page = await browser.newPage()
    page.on('console', (m) => console.log(name + ':', m.text()))
    page.on('pageerror', (e) => console.log(name + ' error:', e.message))
    await page.goto(SHARE_PAGE_URL)
    return page
  }
  const seq = (page) => page.evaluate(() => window.__group.seq)
  const until = async (page, fn, arg, what) => {
    try {
      await page.waitForFunction(fn, { timeout: 10_000, polling: 20 }, arg)
    } catch (e) {
      throw new Error('share: ' + what + ': ' + e.message)
    }
  }
  const write = (page, id) =>
    page.evaluate((id) => {
      const group = new URLSearchParams(location.search).get('group')
      return window.__client.call('stream::set', { stream_name: 'chat', group_id: group, item_id: id, data: { text: id } })
    }, id)
  const a = await open('tab-a')
  await until(a, () => window.__group.seq === 0 && window.__client.state === 'live', null, 'tab a live')
  const b = await open('tab-b')
  await until(b, () => window.__group.seq === 0 && window.__client.state === 'live', null, 'tab b gets the group through tab a')
  await write(a, 'm1')
  await write(b, 'm2')
  await until(b, () => window.__group.seq === 2, null, 'tab b sees both writes')
  const sockets = [await a.evaluate(() => window.__gatewaySockets), await b.evaluate(() => window.__gatewaySockets)]

  // A third tab joins a group of its own through a, then crashes (no
  // pagehide, no leave): a stops hearing its beats and leaves the group at
  // the gateway.
  const c = await open('tab-c')
  await until(c, () => window.__client.state === 'live', null, 'tab c live')
  const only = await c.evaluate(() => {
    const g = 'only-c-' + Math.random().toString(36).slice(2)
    window.__client.group('chat', g)
    return g
  })
  await until(a, (g) => window.__sent.some((f) => f.type === 'join' && f.data.groupId === g), only, "a joins tab c's group")
  const joinedId = await a.evaluate((g) => window.__sent.find((f) => f.type === 'join' && f.data.groupId === g).data.subscriptionId, only)
  const cdp = await c.createCDPSession()
  cdp.send('Page.crash').catch(() => {}) // answers never: the renderer is gone
  const crashed = Date.now()
  await until(a, (id) => window.__sent.some((f) => f.type === 'leave' && f.data.subscriptionId === id), joinedId, "a leaves the crashed tab's group")
  const leftAfter = Date.now() - crashed
  console.log(`share: a crashed tab's group left after ${leftAfter} ms`)
  await c.close().catch(() => {})

  await a.close({ runBeforeUnload: true })
  await write(b, 'm3') // while no tab holds the socket, most likely
  await until(b, () => window.__gatewaySockets === 1 && window.__client.state === 'live', null, 'tab b takes the socket over')
  await write(b, 'm4')
  await until(b, () => window.__group.seq === 4, null, 'tab b sees the writes around the takeover')
  const changes = await b.evaluate(() => JSON.stringify(window.__changes))
  const res = {
    oneSocket: sockets.join() === '1,0' ? 'ok' : 'sockets ' + sockets,
    crashedTabLeft: leftAfter < 10_000 ? 'ok' : 'after ' + leftAfter + ' ms',
    takeover: changes === '[["snapshot",0],["create",1],["create",2],["create",3],["create",4]]' ? 'ok' : changes,
  }
  console.log('share', JSON.stringify(res), 'seq', await seq(b), `crashed tab's group left after ${leftAfter} ms`)
  if (Object.values(res).some((v) => v !== 'ok')) failed = true
  await b.close()
}

/**
 * presence.html in two tabs of one user, each with its own socket: both
 * show one member with connections 2, announced as joining once; when one
 * tab closes, the other shows connections 1 after the grace. Then two tabs
 * with shareAcrossTabs: one socket, so one member with connections 1, in
 * both tabs (the second gets it through the first).
 */
async function presence() {
  const open = async (name, share, group = 'present') => {
    const page = await browser.newPage()
    page.on('console', (m) => console.log(name + ':', m.text()))
    page.on('pageerror', (e) => console.log(name + ' error:', e.message))
    const url = new URL(PRESENCE_PAGE_URL)
    url.searchParams.set('share', share)
    url.searchParams.set('tab', name)
    url.searchParams.set('group', group)
    await page.goto(url.href)
    return page
  }
  const members = (page) => page.evaluate(() => JSON.stringify(window.__members()))
  const until = async (page, want, what) => {
    try {
      await page.waitForFunction((want) => JSON.stringify(window.__members()) === want, { timeout: 10_000, polling: 20 }, want)
    } catch (e) {
      throw new Error(`presence: ${what}: ${e.message}; members ${await members(page)}`)
    }
  }
  const one = (n) => JSON.stringify([{ identity: 'browser', connections: n }])
  const a = await open('presence-a', 0)
  await until(a, one(1), 'tab a alone')
  const b = await open('presence-b', 0)
  await until(b, one(2), 'tab b: one member, connections 2')
  await until(a, one(2), 'tab a: one member, connections 2')
  const joins = [await a.evaluate(() => JSON.stringify(window.__joins)), await b.evaluate(() => JSON.stringify(window.__joins))]
  await a.close({ runBeforeUnload: true })
  const closed = Date.now()
  await until(b, one(1), 'tab b after tab a closed')
  const after = Date.now() - closed
  await b.close()

  const group = 'shared-' + Math.random().toString(36).slice(2)
  const c = await open('presence-share-c', 1, group)
  await until(c, one(1), 'shareAcrossTabs: tab c alone')
  const d = await open('presence-share-d', 1, group)
  await until(c, one(1), 'shareAcrossTabs: tab c, one socket')
  await until(d, one(1), 'shareAcrossTabs: tab d, through tab c')
  await c.close()
  await d.close()
  const res = { joinsOnce: joins.every((j) => j === '{"browser":1}') ? 'ok' : joins.join(' ') }
  console.log('presence', JSON.stringify(res), `two tabs of one user: one member, connections 2; one tab closed: connections 1 after ${after} ms`)
  if (Object.values(res).some((v) => v !== 'ok')) failed = true
}

/**
 * share.html left for another page and restored from the back/forward
 * cache: its client takes part again and its group resumes.
 */
async function backForwardCache() {
  const page = await browser.newPage()
  page.on('console', (m) => console.log('bfcache:', m.text()))
  page.on('pageerror', (e) => console.log('bfcache error:', e.message))
  const u = new URL(SHARE_PAGE_URL)
  u.searchParams.set('group', 'cached')
  await page.goto(u.href)
  await page.waitForFunction(() => window.__client.state === 'live' && window.__group.seq === 0, { timeout: 10_000 })
  await page.goto(new URL('/other.html', u).href)
  await page.goBack()
  const restored = await page.evaluate(() => window.__restored === true)
  let live = 'ok'
  try {
    await page.waitForFunction(() => window.__client.state === 'live', { timeout: 10_000, polling: 20 })
    await page.evaluate(() => window.__client.call('stream::set', { stream_name: 'chat', group_id: 'cached', item_id: 'm1', data: { text: 'after' } }))
    await page.waitForFunction(() => window.__group.seq === 1, { timeout: 10_000, polling: 20 })
  } catch (e) {
    live = await page.evaluate(() => 'state ' + window.__client.state + ', seq ' + window.__group.seq)
  }
  const res = { restored: restored ? 'ok' : 'not from the back/forward cache', live }
  console.log('bfcache', JSON.stringify(res))
  if (Object.values(res).some((v) => v !== 'ok')) failed = true
  await page.close()
}

try {
  await shareAcrossTabs()
  await presence()
  await backForwardCache()
  await strictMode()
  // Two tabs over SSE at once, each with more groups than the browser's
  // connections per host.
  const sse2 = new URL(SSE_PAGE_URL)
  sse2.searchParams.set('group', 'over-sse-2')
  for (const p of await Promise.all([checks(SSE_PAGE_URL, 'sse'), checks(sse2.href, 'sse tab 2')])) await p.close()
  const page = await checks(PAGE_URL, 'websocket', throttleTimers)

  // The page goes to the background, where browsers throttle its timers.
  const front = await browser.newPage()
  await front.goto('about:blank')
  await front.bringToFront()
  const visibility = await page.evaluate(() => document.visibilityState)
  console.log('page visibility:', visibility)
  // From now on the page's own timers wake once a minute: one due in 100 ms
  // does not run within 2 s.
  const throttled = await page.evaluate(() => {
    window.__throttle()
    return new Promise((r) => {
      setTimeout(() => r(false), 100)
      const t0 = performance.now()
      fetch('data:,').then(function wait() {
        if (performance.now() - t0 > 2000) r(true)
        else fetch('data:,').then(wait)
      })
    })
  })
  console.log('page timers throttled:', throttled)
  if (!throttled) failed = true
  const res2 = await fetch(CONTROL + '/freeze', { method: 'POST' })
  if (!res2.ok) throw new Error('freeze: ' + res2.status)
  const t0 = Date.now()
  let state = 'live'
  while (state === 'live' && Date.now() - t0 < 15_000) {
    await new Promise((r) => setTimeout(r, 100))
    state = await page.evaluate(() => window.__client.state)
  }
  const took = Date.now() - t0
  console.log(`hidden page, timers throttled: the dead connection noticed after ${took} ms (state ${state})`)
  if (visibility !== 'hidden' || state === 'live' || took >= 10_000) failed = true
} catch (e) {
  console.log(e)
  failed = true
} finally {
  await browser.close()
}
process.exit(failed ? 1 : 0)
