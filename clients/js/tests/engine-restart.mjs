// The engine itself killed and restarted mid-stream (file store): run by
// compat/jsclient_engine_test.go, which sets TRINE_ENGINE_STREAM,
// TRINE_III and TRINE_CONTROL (POST /engine/restart). Not a *.test.mjs:
// the other tests (TestJSClient) do not run it.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect } from '../dist/index.js'

const { TRINE_ENGINE_STREAM: STREAM, TRINE_III: III, TRINE_CONTROL: CONTROL } = process.env
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
async function waitFor(fn, what, ms = 30000) {
  for (const deadline = Date.now() + ms; !fn(); await sleep(10)) if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
}

test('an engine killed and restarted mid-stream: no gap, no duplicate (or a resync), nothing lost', async (t) => {
  const g = 'restart-' + Math.random().toString(36).slice(2)
  const c = connect(STREAM, { backoff: { min: 50, max: 300 } })
  t.after(() => c.close())
  const group = c.group('counter', g)
  const changes = []
  group.subscribe((items, ch) => changes.push({ type: ch.type, seq: ch.seq, value: ch.value }))
  await waitFor(() => c.state === 'live', 'live')

  // Writes 1, 2, 3 … to item n; a call that fails (the engine is down)
  // is made again on a new connection.
  let w = connect(STREAM, { callUrl: III })
  let stop = false
  let last = 0 // the seq of the last acknowledged write
  let written = 0
  let failed = 0
  const acked = [] // [seq, value] of every acknowledged write
  const writer = (async () => {
    for (let i = 1; !stop; ) {
      try {
        last = (await w.call('stream::set', { stream_name: 'counter', group_id: g, item_id: 'n', data: i }, { timeout: 2000 })).seq
        acked.push([last, i])
        written = i++
      } catch {
        failed++
        w.close()
        await sleep(100)
        w = connect(STREAM, { callUrl: III })
      }
      await sleep(10)
    }
  })()
  t.after(() => w.close())
  await waitFor(() => last >= 30, '30 writes')
  const res = await fetch(CONTROL + '/engine/restart', { method: 'POST' })
  assert.ok(res.ok, 'restart: ' + res.status + ' ' + (await res.text()))
  const before = last
  await waitFor(() => last >= before + 30, '30 writes after the restart')
  stop = true
  await writer
  await waitFor(() => group.seq === last && c.state === 'live', `the group at seq ${last} (it is at ${group.seq})`)

  let prev
  let resyncs = 0
  for (const ch of changes) {
    if (ch.type === 'snapshot' || ch.type === 'resync') {
      resyncs += ch.type === 'resync'
      assert.ok(prev === undefined || ch.seq >= prev, `a ${ch.type} at ${ch.seq} went back from ${prev}`)
    } else assert.equal(ch.seq, prev + 1, `after seq ${prev}: ${ch.seq} (gap or duplicate)`)
    prev = ch.seq
  }
  assert.equal(group.items.get('n'), written, 'the last value written')
  // Every acknowledged write was seen as the change with its seq, unless a
  // resync said changes up to its seq were not seen one by one.
  const seen = new Map(changes.filter((ch) => ch.value !== undefined).map((ch) => [ch.seq, ch.value]))
  const resynced = Math.max(0, ...changes.filter((ch) => ch.type === 'resync').map((ch) => ch.seq))
  for (const [seq, v] of acked) if (seq > resynced) assert.equal(seen.get(seq), v, `the write of ${v} at seq ${seq}`)
  t.diagnostic(`engine restarted after seq ${before}; ${last} writes, ${failed} calls failed meanwhile, ${resyncs} resyncs, ${changes.length} changes seen`)
})
