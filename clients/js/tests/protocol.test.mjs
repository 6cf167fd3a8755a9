// The client's side of the protocol against a scripted gateway (a fake
// WebSocket): frames a real gateway sends only under faults (a duplicate,
// a gap, a frame of a replaced subscription, a 4001 close).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect } from '../dist/index.js'

/** Polls fn until it is truthy (2 s at most). */
async function until(fn) {
  for (const deadline = Date.now() + 2000; !fn(); ) {
    if (Date.now() > deadline) throw new Error('timed out: ' + fn)
    await new Promise((r) => setTimeout(r, 2))
  }
}

function fakeServer() {
  const sockets = []
  class FakeSocket {
    readyState = 0
    sent = []
    constructor(url) {
      this.url = url
      sockets.push(this)
      setTimeout(() => {
        this.readyState = 1
        this.onopen?.({})
      })
    }
    send(s) {
      this.sent.push(JSON.parse(s))
    }
    close() {
      this.readyState = 3
    }
    push(f) {
      this.onmessage?.({ data: JSON.stringify(f) })
    }
  }
  return { sockets, FakeSocket }
}

const frame = (sub, seq, event, id = null) => ({ seq, id, type: 'stream', streamName: 's', groupId: 'g', subscriptionId: sub, event })

test('a duplicate is dropped; a gap resumes with since; frames of a replaced subscription are ignored', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket })
  t.after(() => c.close())
  const group = c.group('s', 'g')
  const changes = []
  group.subscribe((_, ch) => changes.push([ch.type, ch.seq]))
  await until(() => sockets[0]?.sent.length)
  const ws = sockets[0]
  assert.equal(ws.url, 'ws://gateway.test/')
  assert.deepEqual(ws.sent, [{ type: 'join', data: { subscriptionId: 's1', streamName: 's', groupId: 'g' } }])

  ws.push(frame('s1', 5, { type: 'sync', data: [1, 2], ids: ['a', 'b'] }))
  ws.push(frame('s1', 6, { type: 'update', data: 3 }, 'a'))
  ws.push(frame('s1', 6, { type: 'update', data: 3 }, 'a')) // duplicate
  assert.equal(ws.sent.length, 1, 'a duplicate is dropped, not taken for a gap')
  ws.push(frame('s1', 8, { type: 'update', data: 5 }, 'a')) // 7 is missing
  assert.deepEqual(ws.sent.slice(1), [
    { type: 'leave', data: { subscriptionId: 's1', streamName: '', groupId: '' } },
    { type: 'join', data: { subscriptionId: 's2', streamName: 's', groupId: 'g', since: 6 } },
  ])
  ws.push(frame('s1', 7, { type: 'update', data: 4 }, 'a')) // the old subscription's
  ws.push(frame('s2', 7, { type: 'create', data: 9 }, 'c'))
  ws.push(frame('s2', 8, { type: 'update', data: 5 }, 'a'))
  ws.push(frame('s2', 9, { type: 'sync', data: [7], ids: ['z'], resync: true }))
  assert.deepEqual(changes, [
    ['snapshot', 5],
    ['update', 6],
    ['create', 7],
    ['update', 8],
    ['resync', 9],
  ])
  assert.deepEqual(Object.fromEntries(group.items), { z: 7 })
  assert.equal(group.seq, 9)
})

test('a 4001 close (token expired) reconnects with a fresh token and resumes with since', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  let n = 0
  const c = connect('http://gateway.test/', { WebSocket: FakeSocket, getToken: () => 'token-' + ++n, backoff: { min: 1, max: 2 } })
  t.after(() => c.close())
  const group = c.group('s', 'g')
  await until(() => sockets[0]?.sent.length)
  assert.equal(sockets[0].url, 'ws://gateway.test/?token=token-1')
  sockets[0].push(frame('s1', 3, { type: 'sync', data: [], ids: [] }))
  assert.equal(c.state, 'live')
  const states = []
  c.on('state', (s) => states.push(s))
  sockets[0].onclose({ code: 4001 })
  await until(() => sockets[1]?.sent.length)
  assert.equal(sockets[1].url, 'ws://gateway.test/?token=token-2')
  assert.deepEqual(sockets[1].sent, [{ type: 'join', data: { subscriptionId: 's2', streamName: 's', groupId: 'g', since: 3 } }])
  assert.deepEqual(states, ['offline', 'connecting', 'live'])
  assert.equal(group.seq, 3)
})

test('optimistic writes: pending at once, confirmed by the seq of the result, rolled back on an error', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket, callUrl: 'ws://iii.test' })
  t.after(() => c.close())
  const group = c.group('s', 'g')
  await until(() => sockets[0]?.sent.length)
  const ws = sockets[0]
  ws.push(frame('s1', 1, { type: 'sync', data: [{ n: 0 }], ids: ['a'] }))
  const changes = []
  group.subscribe((items, ch) => changes.push([ch.type, ch.id, ch.seq, ch.pending, JSON.stringify(items.get(ch.id))]))
  const optimistic = (id, data) => ({ optimistic: { stream: 's', group: 'g', id, data } })

  // The answer first, then the change it names.
  const p1 = c.call('todos::edit', { n: 1 }, optimistic('a', { n: 1 }))
  assert.deepEqual(changes, [['update', 'a', 1, true, '{"n":1}']])
  await until(() => sockets[1]?.sent.length === 2)
  const iii = sockets[1]
  assert.equal(iii.url, 'ws://iii.test')
  assert.equal(iii.sent[0].function_id, 'engine::workers::register')
  const answer = (i, body) => iii.push({ type: 'invocationresult', invocation_id: iii.sent[i].invocation_id, ...body })
  assert.deepEqual({ ...iii.sent[1], invocation_id: 0 }, { type: 'invokefunction', invocation_id: 0, function_id: 'todos::edit', data: { n: 1 } })
  answer(1, { result: { seq: 2 } })
  assert.deepEqual(await p1, { seq: 2 })
  assert.equal(changes.length, 1, 'pending until seq 2 arrives')
  ws.push(frame('s1', 2, { type: 'update', data: { n: 1 } }, 'a'))
  assert.deepEqual(changes.at(-1), ['update', 'a', 2, false, '{"n":1}'], 'the confirming change ends the pending write')

  // The change first (under the pending value), then the answer.
  const p2 = c.call('todos::edit', {}, optimistic('a', { n: 2 }))
  ws.push(frame('s1', 3, { type: 'update', data: { n: 2 } }, 'a'))
  assert.deepEqual(changes.slice(2), [['update', 'a', 2, true, '{"n":2}']])
  await until(() => iii.sent.length === 3)
  answer(2, { result: { seq: 3 } })
  await p2
  assert.deepEqual(changes.slice(3), [['update', 'a', 3, false, '{"n":2}']])

  // An error: rolled back.
  const p3 = c.call('todos::add', {}, optimistic('b', 1))
  assert.deepEqual(changes.at(-1), ['create', 'b', 3, true, '1'])
  await until(() => iii.sent.length === 4)
  answer(3, { error: { code: 'conflict', message: 'seq mismatch' } })
  await assert.rejects(p3, (e) => e.code === 'conflict')
  assert.deepEqual(changes.at(-1), ['delete', 'b', 3, false, undefined])
  assert.deepEqual(Object.fromEntries(group.items), { a: { n: 2 } })

  // A resync while a write is pending keeps it shown over the new state.
  const p4 = c.call('todos::edit', {}, optimistic('a', { n: 4 }))
  ws.push(frame('s1', 9, { type: 'sync', data: [{ n: 3 }, 5], ids: ['a', 'c'], resync: true }))
  assert.deepEqual(Object.fromEntries(group.items), { a: { n: 4 }, c: 5 })
  await until(() => iii.sent.length === 5)
  answer(4, { result: { seq: 10 } })
  await p4
  ws.push(frame('s1', 10, { type: 'update', data: { n: 4 } }, 'a'))
  assert.deepEqual(changes.at(-1), ['update', 'a', 10, false, '{"n":4}'])
  ws.push(frame('s1', 11, { type: 'update', data: { n: 5 } }, 'a'))
  assert.deepEqual(changes.at(-1), ['update', 'a', 11, undefined, '{"n":5}'], 'a server change has no pending')
})

test('getToken: a renewal and a reconnect needing a token at once share one call', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const jwt = (exp) => 'h.' + Buffer.from(JSON.stringify({ exp })).toString('base64url') + '.s'
  let calls = 0
  const c = connect('ws://gateway.test', {
    WebSocket: FakeSocket,
    // A token good for 6.5 s (renewed at 80% of that: about 5.2 s), handed out slowly.
    getToken: () => {
      calls++
      return new Promise((r) => setTimeout(() => r(jwt(Date.now() / 1000 + 6.5)), 300))
    },
    backoff: { min: 1, max: 2 },
  })
  t.after(() => c.close())
  await until(() => sockets[0]?.readyState === 1)
  assert.equal(calls, 1)
  // Close with 4001 while the renewal's getToken is under way: the
  // reconnect needs a token too, and waits for the same call.
  for (const deadline = Date.now() + 8000; calls === 1; await new Promise((r) => setTimeout(r, 5)))
    if (Date.now() > deadline) throw new Error('no renewal')
  sockets[0].onclose({ code: 4001 })
  await until(() => sockets[1]?.readyState === 1)
  assert.equal(calls, 2)
  assert.match(sockets[1].url, /token=h\./)
})

test('presence: a join of a member shown is an update, a sync says who came and went, counts only empty the members', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket })
  t.after(() => c.close())
  const group = c.group('s', 'g', { presence: { meta: { name: 'Ada' } } })
  const seen = []
  group.presence.subscribe((members, ch) => seen.push([ch.type, ch.member?.identity ?? ch.count ?? [ch.joined.map((m) => m.identity), ch.left.map((m) => m.identity)], [...members.keys()].join()]))
  await until(() => sockets[0]?.sent.length)
  const ws = sockets[0]
  assert.deepEqual(ws.sent, [{ type: 'join', data: { subscriptionId: 's1', streamName: 's', groupId: 'g', presence: { meta: { name: 'Ada' } } } }])
  const m = (identity, connections = 1) => ({ identity, connections, joined_at: 1 })
  const p = (event, sub = 's1') => ws.push({ type: 'presence', subscriptionId: sub, event })
  p({ type: 'sync', members: [m('a'), m('b')] })
  p({ type: 'join', member: m('a', 2) }) // shown already: an update
  p({ type: 'leave', member: m('x', 0) }) // not shown: nothing
  p({ type: 'update', member: m('c') }) // not shown: a join
  p({ type: 'join', member: m('z') }, 's9') // another subscription's: nothing
  p({ type: 'sync', members: [m('a', 2), m('c'), m('d')] }) // b went, d came
  p({ type: 'count', count: 1500 })
  assert.equal(group.presence.large, true)
  assert.equal(group.presence.count, 1500)
  p({ type: 'sync', members: [m('a')] })
  assert.deepEqual(seen, [
    ['sync', [['a', 'b'], []], 'a,b'],
    ['update', 'a', 'a,b'],
    ['join', 'c', 'a,b,c'],
    ['sync', [['d'], ['b']], 'a,c,d'],
    ['count', 1500, ''],
    ['sync', [['a'], []], 'a'],
  ])
  assert.equal(group.presence.count, 1)
  assert.equal(group.presence.large, false)

  // setMeta joins again with the new meta, resuming with since.
  ws.push(frame('s1', 3, { type: 'sync', data: [], ids: [] }))
  group.presence.setMeta({ name: 'Ada L.' })
  assert.deepEqual(ws.sent.slice(1).map((f) => [f.type, f.data.subscriptionId, f.data.since, f.data.presence]), [
    ['leave', 's1', undefined, undefined],
    ['join', 's2', 3, { meta: { name: 'Ada L.' } }],
  ])
  // A refusal of presence: the group joins again without it.
  ws.push({ type: 'error', subscriptionId: 's2', code: 'presence_limit', message: 'full' })
  assert.equal(group.presence.error.code, 'presence_limit')
  assert.deepEqual(ws.sent.at(-1), { type: 'join', data: { subscriptionId: 's3', streamName: 's', groupId: 'g', since: 3 } })
})

test('handles of one group taken in one task make one join: useGroup and usePresence in a component', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket })
  t.after(() => c.close())
  c.group('s', 'first')
  await until(() => sockets[0]?.sent.length)
  const ws = sockets[0]
  // The socket is open: both handles in one task, the second with presence.
  c.group('s', 'g')
  c.group('s', 'g', { presence: true })
  await until(() => ws.sent.length > 1)
  await new Promise((r) => setTimeout(r, 20))
  assert.deepEqual(ws.sent.slice(1), [{ type: 'join', data: { subscriptionId: 's2', streamName: 's', groupId: 'g', presence: true } }])
})

test('error frames do not reset the backoff: a group the gateway cannot serve rejoins with its own growing backoff', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket, backoff: { min: 50, max: 5000 } })
  t.after(() => c.close())
  const errors = []
  c.on('error', (e) => errors.push(e.code))
  c.group('s', 'g')
  await until(() => sockets[0]?.sent.length)
  const ws = sockets[0]
  // Every join gets snapshot_failed, for 1.5 s.
  const joins = () => ws.sent.filter((f) => f.type === 'join')
  let answered = 0
  for (const end = Date.now() + 1500; Date.now() < end; await new Promise((r) => setTimeout(r, 2)))
    while (answered < joins().length)
      ws.push({ type: 'error', code: 'snapshot_failed', message: 'store down', subscriptionId: joins()[answered++].data.subscriptionId })
  // Full jitter over 50·2^n ms: about 6 tries in 1.5 s at most; reset on
  // every error frame it was one every 25 ms (about 60).
  assert.ok(joins().length >= 2 && joins().length <= 9, joins().length + ' joins in 1.5 s')
  assert.equal(sockets.length, 1, 'the connection stays')
  assert.ok(errors.every((e) => e === 'snapshot_failed'))
})

test('hostile frames: a sync going backwards is a resync; malformed frames change nothing', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket, backoff: { min: 20, max: 40 } })
  t.after(() => c.close())
  const errors = []
  c.on('error', (e) => errors.push(e.code))
  const group = c.group('s', 'g')
  const changes = []
  group.subscribe((_, ch) => changes.push(ch.type + '@' + ch.seq))
  group.on('ping', (_, m) => changes.push('event@' + m.seq))
  await until(() => sockets[0]?.sent.length)
  const ws = sockets[0]
  ws.push(frame('s1', 5, { type: 'sync', data: [{ v: 1 }], ids: ['a'] }))
  ws.push(frame('s1', 6, { type: 'update', data: { v: 2 } }, 'a'))
  ws.push(frame('s1', 7, { type: 'event', event: { type: 'ping', data: 1 } }))
  // The store lost its history (a restarted in-memory engine): sequences
  // restart below the state shown, without the resync flag.
  ws.push(frame('s1', 3, { type: 'sync', data: [{ v: 1 }], ids: ['a'] }))
  assert.deepEqual(changes, ['snapshot@5', 'update@6', 'event@7', 'resync@3'])
  assert.equal(group.seq, 3)

  // Malformed: no exception reaches the transport, the state stays, the
  // group joins again (with since) after its backoff.
  const before = JSON.stringify([...group.items])
  for (const [seq, event, id] of [
    [4, { type: 'sync', data: null, ids: [] }],
    [4, { type: 'sync', data: [1, 2], ids: ['x'] }],
    ['4', { type: 'update', data: {} }, 'a'],
    [4, { type: 'update', data: {} }, null],
    [4, { type: 'event' }],
    [4, null],
  ]) {
    const n = ws.sent.length
    changes.length = 0
    const bad = frame(ws.sent.at(-1).data.subscriptionId, seq, event, id)
    assert.doesNotThrow(() => ws.push(bad))
    assert.deepEqual(changes, [], JSON.stringify(bad))
    assert.equal(JSON.stringify([...group.items]), before)
    assert.equal(group.seq, 3)
    assert.equal(errors.at(-1), 'bad_frame')
    assert.equal(ws.sent[n]?.type, 'leave')
    await until(() => ws.sent.at(-1).type === 'join')
    assert.equal(ws.sent.at(-1).data.since, 3)
  }
  // Five bad frames of a subscription: the first ends it, the others are
  // a left subscription's; one leave and one join again, no storm.
  const n = ws.sent.length
  const sub = ws.sent.at(-1).data.subscriptionId
  for (let i = 0; i < 5; i++) ws.push(frame(sub, '9', { type: 'update', data: {} }, 'a'))
  await until(() => ws.sent.length > n + 1)
  await new Promise((r) => setTimeout(r, 50))
  assert.deepEqual(ws.sent.slice(n).map((f) => f.type), ['leave', 'join'])
})

test('close: nothing runs after it, a token refresh under way included', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const jwt = (exp) => 'h.' + Buffer.from(JSON.stringify({ exp })).toString('base64url') + '.s'
  let calls = 0
  // Good for 5.5 s: renewed after about 4.4 s, were it scheduled.
  const getToken = () => {
    calls++
    return new Promise((r) => setTimeout(() => r(jwt(Date.now() / 1000 + 5.5)), 200))
  }
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket, getToken })
  await new Promise((r) => setTimeout(r, 50))
  c.close()
  await new Promise((r) => setTimeout(r, 5000))
  assert.equal(calls, 1)
  assert.equal(sockets.length, 0)
  assert.equal(c.state, 'closed')
})

test('latency: one sample a second, of changes committed after the join; none for snapshots, refusals or with reportLatency false', async (t) => {
  for (const reportLatency of [undefined, false]) {
    const { sockets, FakeSocket } = fakeServer()
    const c = connect('ws://gateway.test', { WebSocket: FakeSocket, reportLatency })
    t.after(() => c.close())
    c.group('s', 'g')
    c.group('s', 'denied')
    await until(() => sockets[0]?.sent.length === 2)
    const ws = sockets[0]
    const at = (f, ms) => ({ ...f, timestamp: Date.now() - ms })
    ws.push(at(frame('s1', 5, { type: 'sync', data: [], ids: [] }), 0))
    ws.push(at(frame('s2', 0, { type: 'unauthorized' }), 0))
    ws.push(at(frame('s1', 6, { type: 'create', data: 1 }, 'a'), 60_000 * 10)) // committed before the join: history
    ws.push(at(frame('s1', 7, { type: 'create', data: 2 }, 'b'), 0))
    ws.push(at(frame('s1', 8, { type: 'create', data: 3 }, 'c'), 0)) // within the second
    const samples = () => ws.sent.filter((f) => f.type === 'latency')
    if (reportLatency === false) {
      assert.deepEqual(samples(), [])
      continue
    }
    assert.equal(samples().length, 1, JSON.stringify(ws.sent))
    const [s] = samples()
    assert.equal(s.data.subscriptionId, 's1')
    assert.ok(s.data.ms >= 0 && s.data.ms < 1000, 'ms ' + s.data.ms)
  }
})

test('contractVersion follows the sync frame and schema frames, which call onSchema', async (t) => {
  const { sockets, FakeSocket } = fakeServer()
  const c = connect('ws://gateway.test', { WebSocket: FakeSocket })
  t.after(() => c.close())
  const group = c.group('s', 'g')
  const seen = []
  group.onSchema((v) => seen.push(v))
  assert.equal(group.contractVersion, undefined)
  await until(() => sockets[0]?.sent.length)
  const ws = sockets[0]
  ws.push(frame('s1', 5, { type: 'sync', data: [1], ids: ['a'], contractVersion: 2 }))
  assert.equal(group.contractVersion, 2)
  assert.deepEqual(seen, [], 'the first version known is no change')
  ws.push(frame('s1', 0, { type: 'schema', contractVersion: 3 }))
  assert.equal(group.contractVersion, 3)
  assert.deepEqual(seen, [3])
  assert.equal(group.seq, 5, 'a schema frame is no change of the state')
  ws.push(frame('s1', 6, { type: 'update', data: 2 }, 'a'))
  assert.equal(group.items.get('a'), 2)
  // A resync read before the definition tells the older version; the
  // gateway's schema frame follows. Versions only go up.
  ws.push(frame('s1', 6, { type: 'sync', data: [2], ids: ['a'], resync: true, contractVersion: 2 }))
  assert.equal(group.contractVersion, 3, 'an older version is not taken')
  ws.push(frame('s1', 0, { type: 'schema', contractVersion: 3 }))
  assert.deepEqual(seen, [3], 'nor is the same one told twice')
})
