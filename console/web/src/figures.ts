// Live figures from the engine's /metrics (Prometheus text, on the
// listener that serves this page): calls/s per function, error rate,
// deliveries/s, connections, slow-client closes and the NATS connection,
// each with a small chart of the last minute. Rates are over the last 2 s.
import type { Page } from './main'
import { every, fill, h, table } from './dom'

type Sample = Map<string, number> // "name{labels}" -> value

function parse(text: string): Sample {
  const m: Sample = new Map()
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue
    const i = line.lastIndexOf(' ')
    m.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return m
}

/** sum adds the series of metric name whose labels match (label="value"). */
function sum(s: Sample, name: string, match?: (labels: string) => boolean) {
  let n = 0
  for (const [k, v] of s) {
    const b = k.indexOf('{')
    if ((b < 0 ? k : k.slice(0, b)) === name && (!match || match(b < 0 ? '' : k.slice(b)))) n += v
  }
  return n
}

const label = (labels: string, l: string) => new RegExp(`${l}="([^"]*)"`).exec(labels)?.[1] ?? ''

const N = 120 // points per chart, two a second

/** chart draws values (the newest last, at the right edge) as a line scaled to its maximum, in SVG. */
function chart(values: number[]) {
  const max = Math.max(1e-9, ...values)
  const from = N - values.length
  const d = values.map((v, i) => `${i ? 'L' : 'M'}${(((from + i) / (N - 1)) * 300).toFixed(1)},${(46 - (v / max) * 44).toFixed(1)}`).join('')
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg')
  svg.setAttribute('class', 'chart')
  svg.setAttribute('viewBox', '0 0 300 48')
  svg.setAttribute('preserveAspectRatio', 'none')
  const p = document.createElementNS('http://www.w3.org/2000/svg', 'path')
  p.setAttribute('d', d)
  svg.appendChild(p)
  return svg
}

const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2))

export const figuresPage: Page = (_ctx, root) => {
  const hist = new Map<string, number[]>()
  const push = (k: string, v: number) => {
    const a = hist.get(k) || []
    a.push(v)
    if (a.length > N) a.shift()
    hist.set(k, a)
    return a
  }
  // Rates are over the last 2 s: the readings of the last 4 ticks.
  const readings: [number, Sample][] = []
  return every(500, async () => {
    const [text, ready] = await Promise.all([
      fetch('/metrics', { cache: 'no-store' }).then((r) => r.text()),
      fetch('/readyz', { cache: 'no-store' }).then((r) => r.json()).catch(() => ({})),
    ])
    const s = parse(text)
    const now = performance.now()
    const [prevAt, prev] = readings[0] || [now, undefined]
    readings.push([now, s])
    if (readings.length > 5) readings.shift()
    const dt = (now - prevAt) / 1000
    const rate = (_: string, v: number, was: number) => (dt ? Math.max(0, v - was) / dt : 0)
    const calls = sum(s, 'trine_calls_total')
    const errors = sum(s, 'trine_calls_total', (l) => label(l, 'code') !== 'ok')
    const callRate = prev ? rate('c', calls, sum(prev, 'trine_calls_total')) : 0
    const errRate = prev ? rate('e', errors, sum(prev, 'trine_calls_total', (l) => label(l, 'code') !== 'ok')) : 0
    const deliveries = sum(s, 'trine_stream_deliveries_total')
    const delRate = prev ? rate('d', deliveries, sum(prev, 'trine_stream_deliveries_total')) : 0
    const natsUp = sum(s, 'trine_nats_connected')
    const figures: [string, string, number][] = [
      ['calls/s', fmt(callRate), callRate],
      ['error rate', callRate ? fmt((100 * errRate) / callRate) + ' %' : '0 %', callRate ? errRate / callRate : 0],
      ['deliveries/s', fmt(delRate), delRate],
      ['browser connections', String(sum(s, 'trine_stream_connections')), sum(s, 'trine_stream_connections')],
      ['workers', String(sum(s, 'trine_workers_connected')), sum(s, 'trine_workers_connected')],
      ['slow-client closes', String(sum(s, 'trine_stream_slow_consumer_closes_total')), sum(s, 'trine_stream_slow_consumer_closes_total')],
      ['NATS', s.has('trine_nats_connected') ? (natsUp ? 'connected' : 'disconnected') : 'n/a', natsUp],
    ]
    // Calls/s per function, busiest first.
    const per = new Map<string, [number, number]>()
    if (prev)
      for (const [k, v] of s) {
        if (!k.startsWith('trine_calls_total{')) continue
        const fn = label(k, 'function_id')
        const r = rate(k, v, prev.get(k) ?? 0)
        const e = label(k, 'code') !== 'ok' ? r : 0
        const [a, b] = per.get(fn) || [0, 0]
        per.set(fn, [a + r, b + e])
      }
    const fns = [...per].filter(([, [r]]) => r > 0).sort((a, b) => b[1][0] - a[1][0]).slice(0, 20)
    fill(root,
      h('div', { class: 'grid', id: 'figures' }, figures.map(([name, shown, v]) =>
        h('section', { class: 'figure' }, h('div', { class: 'muted' }, name), h('div', { class: 'v', 'data-figure': name }, shown), chart(push(name, v))))),
      h('section', {}, h('h2', {}, 'Calls/s by function'),
        table(['function', 'calls/s', 'errors/s', ''], fns, ([fn, [r, e]]) => [h('code', {}, fn), fmt(r), fmt(e), chart(push('fn ' + fn, r))], { empty: 'No call in the last 2 s.' })),
      h('section', {}, h('h2', {}, 'Readiness'), h('code', {}, JSON.stringify(ready))))
  })
}
