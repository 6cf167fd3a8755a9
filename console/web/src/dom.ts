// Small DOM helpers: the console uses no framework.

type Child = Node | string | number | null | undefined | false | Child[]

/** h makes an element: h('td', {class: 'x', onclick}, 'text', child). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, any> = {}, ...kids: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (k in el && k !== 'list') (el as any)[k] = v
    else el.setAttribute(k, String(v))
  }
  add(el, kids)
  return el
}

function add(el: Node, kids: Child[]) {
  for (const c of kids) {
    if (c == null || c === false) continue
    if (Array.isArray(c)) add(el, c)
    else el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)))
  }
}

/** fill replaces el's children. */
export function fill(el: Element, ...kids: Child[]) {
  el.replaceChildren()
  add(el, kids)
}

/** table draws rows under a header; row gives each row's cells. */
export function table<T>(
  head: string[],
  rows: T[],
  row: (r: T) => Child[],
  opts: { empty?: string; onpick?: (r: T) => void; picked?: (r: T) => boolean; mark?: (r: T) => string | undefined } = {},
) {
  if (!rows.length) return h('p', { class: 'muted' }, opts.empty || 'none')
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, head.map((x) => h('th', {}, x)))),
    h(
      'tbody',
      {},
      rows.map((r) =>
        h(
          'tr',
          { class: [opts.onpick && 'pick', opts.picked?.(r) && 'sel', opts.mark?.(r)].filter(Boolean).join(' ') || null, onclick: opts.onpick && (() => opts.onpick!(r)) },
          row(r).map((c) => h('td', {}, c)),
        ),
      ),
    ),
  )
}

export const badge = (s: string) => h('span', { class: 'badge ' + s }, s)

export const json = (v: unknown) => h('pre', {}, JSON.stringify(v, null, 2))

/** short shows a JSON value on one line, cut at n characters. */
export function short(v: unknown, n = 80) {
  const s = JSON.stringify(v) ?? 'undefined'
  return h('code', { title: s.length > n ? s : null }, s.length > n ? s.slice(0, n - 1) + '…' : s)
}

/**
 * POLL_MS is how often a page reads its lists again: a write shows within
 * a second, and an open tab costs the engine a few calls a second only.
 */
export const POLL_MS = 700

/**
 * every runs f now and then every ms until stopped; runs never overlap, and
 * none runs while the page is hidden (it runs again as it shows).
 */
export function every(ms: number, f: () => Promise<unknown> | void): () => void {
  let stopped = false
  let running = false
  let t: ReturnType<typeof setTimeout> | undefined
  const tick = async () => {
    t = undefined
    if (stopped || running || document.hidden) return
    running = true
    try {
      await f()
    } catch {}
    running = false
    if (!stopped && !document.hidden) t = setTimeout(tick, ms)
  }
  const shown = () => {
    if (!document.hidden && t === undefined) tick()
  }
  document.addEventListener('visibilitychange', shown)
  tick()
  return () => {
    stopped = true
    clearTimeout(t)
    document.removeEventListener('visibilitychange', shown)
  }
}

export const ago = (ms: number) => {
  const s = Math.round((Date.now() - ms) / 1000)
  return s < 60 ? s + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago' : Math.round(s / 3600) + ' h ago'
}
