// Reconnects: a gateway killed mid-stream, history exhausted, a dead
// connection.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GATEWAY, client, contiguous, control, sleep, uniq, waitFor, writer } from './helpers.mjs'

const fast = { backoff: { min: 50, max: 300 } }

/** Writes 1, 2, 3 … to item n of (counter, g) until stop(); returns the last seq. */
function keepWriting(w, g) {
  let stop = false
  let last = 0
  const done = (async () => {
    for (let i = 1; !stop; i++) {
      last = (await w.call('stream::set', { stream_name: 'counter', group_id: g, item_id: 'n', data: i })).seq
      await sleep(20)
    }
  })()
  return {
    last: () => last,
    stop: async () => {
      stop = true
      await done
      return last
    },
  }
}

for (const transport of ['websocket', 'sse']) {
  test(`${transport}: a gateway killed mid-stream; the group resumes with since, no gap, no duplicate`, async (t) => {
    const w = writer(t)
    const g = uniq('resume')
    const c = client(t, transport === 'sse' ? GATEWAY.replace(/^ws/, 'http') : GATEWAY, { ...fast, transport })
    const states = []
    c.on('state', (s) => states.push(s))
    const group = c.group('counter', g)
    const changes = []
    group.subscribe((_, change) => changes.push(change))
    await waitFor(() => c.state === 'live', 'live')
    const writing = keepWriting(w, g)
    await waitFor(() => group.seq >= 10, 'ten changes')
    await control('/gateway/restart') // SIGKILL, then the same port again
    const before = writing.last()
    await waitFor(() => group.seq > before + 10, 'changes after the restart')
    const last = await writing.stop()
    await waitFor(() => group.seq === last, `seq ${last}`)

    assert.equal(changes[0].type, 'snapshot')
    const rest = changes.slice(1)
    contiguous(rest, changes[0].seq, last)
    for (const ch of rest) assert.equal(ch.value, ch.seq, `the value written with seq ${ch.seq}`)
    assert.equal(group.items.get('n'), last)
    assert.ok(states.includes('offline'), `states ${states}`)
    assert.equal(c.state, 'live')
  })
}

test('history exhausted: a resync replaces the state and says from which seq', async (t) => {
  const w = writer(t)
  const g = uniq('resync')
  const set = (id, data) => w.call('stream::set', { stream_name: 'counter', group_id: g, item_id: id, data })
  const c = client(t, GATEWAY, fast)
  const group = c.group('counter', g)
  const changes = []
  group.subscribe((state, change) => changes.push([change, Object.fromEntries(state)]))
  await waitFor(() => group.seq === 0, 'the empty snapshot')
  await set('a', 0)
  await waitFor(() => group.seq === 1, 'seq 1')

  await control('/gateway/kill')
  await waitFor(() => c.state === 'offline', 'offline')
  // More changes than the engine keeps for since (--stream-history 200).
  for (let i = 1; i <= 50; i++) await Promise.all([0, 1, 2, 3, 4].map((j) => set('k' + j, i)))
  await control('/gateway/start')
  await waitFor(() => group.seq === 251, 'seq 251')

  const types = changes.map(([ch]) => ch.type)
  assert.deepEqual(types, ['snapshot', 'create', 'resync'])
  const [resync, state] = changes[2]
  assert.equal(resync.seq, 251)
  assert.deepEqual(state, { a: 0, k0: 50, k1: 50, k2: 50, k3: 50, k4: 50 })
  await waitFor(() => c.state === 'live', 'live')
})

for (const transport of ['websocket', 'sse'])
  test(`${transport}: a connection gone silent is found dead within 10 s, and replaced`, async (t) => {
    const { addr } = await control('/proxy') // a TCP proxy to the gateway
    const c = client(t, 'ws://' + addr, { ...fast, transport })
    const group = c.group('counter', uniq('dead'))
    await waitFor(() => c.state === 'live' && group.seq !== undefined, 'live')
    await control('/proxy/freeze?addr=' + addr) // connections stay open; nothing goes through
    const t0 = Date.now()
    await waitFor(() => c.state !== 'live', 'the dead connection noticed', 12000)
    const took = Date.now() - t0
    assert.ok(took < 10000, `noticed after ${took} ms`)
    t.diagnostic(`${transport}: dead connection noticed after ${took} ms`)
    // The gateway stays unreachable: the client is not live again.
    const states = []
    c.on('state', (s) => states.push(s))
    await sleep(3000)
    assert.ok(!states.includes('live') && c.state !== 'live', 'live against a frozen gateway: ' + states)
  })

test('a reconnect storm after a gateway restart costs one snapshot read and one history read', async (t) => {
  const w = writer(t)
  const g = uniq('storm')
  for (let i = 0; i < 10; i++) await w.call('stream::set', { stream_name: 'todos', group_id: g, item_id: 'i' + i, data: i })
  const opts = { backoff: { min: 20, max: 40 } }
  const open = (n) => Array.from({ length: n }, () => client(t, GATEWAY, opts)).map((c) => [c, c.group('todos', g)])
  const live = (cs) => cs.every(([c, group]) => c.state === 'live' && group.seq === 10)
  const old = open(40)
  await waitFor(() => live(old), 'the first 40 clients live')
  await control('/gateway/kill')
  await waitFor(() => old.every(([c]) => c.state !== 'live'), 'every client offline')
  // 40 more open meanwhile: they have no state, and need a snapshot.
  const fresh = open(40)
  // Each has failed to connect once (they retry every 20-40 ms, so all
  // of them are seldom offline at the same moment).
  const failed = new Set()
  for (const [c] of fresh) c.on('state', (s) => s === 'offline' && failed.add(c))
  await waitFor(() => failed.size === fresh.length, 'the new clients offline')
  await control('/gateway/start')
  await waitFor(() => live(old) && live(fresh), 'all 80 clients live again')
  const stats = await control('/gateway/stats')
  const snapshots = stats.trine_stream_snapshot_reads_total
  const history = stats.trine_stream_history_reads_total
  t.diagnostic(`80 clients reconnecting (40 with since, 40 without): ${snapshots} snapshot reads, ${history} history reads`)
  assert.equal(snapshots, 1, 'snapshot reads')
  assert.ok(history <= 1, `${history} history reads`)
})
