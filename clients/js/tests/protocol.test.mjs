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
