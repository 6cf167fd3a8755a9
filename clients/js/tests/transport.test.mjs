// SSE with the same API, and the automatic fallback to it.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GATEWAY, client, uniq, waitFor, writer } from './helpers.mjs'

const http = GATEWAY.replace(/^ws/, 'http')

async function roundTrip(t, c) {
  const w = writer(t)
  const g = uniq('sse')
  await w.call('stream::set', { stream_name: 'todos', group_id: g, item_id: 'a', data: 1 })
  const group = c.group('todos', g)
  const item = c.item('todos', g, 'a')
  const sends = []
  group.on('nudge', (d) => sends.push(d))
  await waitFor(() => group.seq === 1 && item.value === 1, 'the snapshots')
  await w.call('stream::set', { stream_name: 'todos', group_id: g, item_id: 'b', data: 2 })
  await w.call('stream::set', { stream_name: 'todos', group_id: g, item_id: 'a', data: 3 })
  await w.call('stream::send', { stream_name: 'todos', group_id: g, type: 'nudge', data: 'hi' })
  await waitFor(() => group.seq === 4 && item.value === 3, 'the changes')
  assert.deepEqual(Object.fromEntries(group.items), { a: 3, b: 2 })
  assert.deepEqual(sends, ['hi'])
  assert.equal(c.state, 'live')
}

test('transport sse: snapshots, changes and events', async (t) => {
  const c = client(t, http, { transport: 'sse' })
  assert.equal(c.transport, 'sse')
  await roundTrip(t, c)
})

test('transport auto: WebSockets that do not get through fall back to SSE', async (t) => {
  // A WebSocket that never connects, as behind a proxy that drops upgrades.
  class Blocked {
    readyState = 3
    constructor() {
      setTimeout(() => this.onclose?.({ code: 1006 }), 5)
    }
    send() {}
    close() {}
  }
  const c = client(t, GATEWAY, { WebSocket: Blocked })
  assert.equal(c.transport, 'websocket')
  await roundTrip(t, c)
  assert.equal(c.transport, 'sse')
})
