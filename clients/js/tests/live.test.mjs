// Snapshots, live changes, items, stream::send events and calls.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ClientError } from '../dist/index.js'
import { GATEWAY, III, client, uniq, waitFor, writer } from './helpers.mjs'

test('a group: its snapshot, then every change in sequence order', async (t) => {
  const w = writer(t)
  const g = uniq('snap')
  const set = (id, data) => w.call('stream::set', { stream_name: 'todos', group_id: g, item_id: id, data })
  await set('a', { title: 'a' })
  await set('b', { title: 'b' })

  const c = client(t, GATEWAY)
  const states = []
  c.on('state', (s) => states.push(s))
  const group = c.group('todos', g)
  const changes = []
  group.subscribe((state, change) => changes.push({ ...change, size: state.size }))
  const sends = []
  group.on('nudge', (data, meta) => sends.push([data, meta.seq, meta.time]))
  await waitFor(() => group.seq === 2, 'the snapshot')
  assert.deepEqual(Object.fromEntries(group.items), { a: { title: 'a' }, b: { title: 'b' } })
  assert.deepEqual(changes, [{ type: 'snapshot', seq: 2, size: 2 }])
  await waitFor(() => c.state === 'live', 'live')
  assert.deepEqual(states, ['resyncing', 'live'])

  const before = Date.now()
  assert.equal((await set('c', { title: 'c' })).seq, 3)
  await w.call('stream::update', { stream_name: 'todos', group_id: g, item_id: 'a', ops: [{ type: 'set', path: 'done', value: true }] })
  await w.call('stream::delete', { stream_name: 'todos', group_id: g, item_id: 'b' })
  await w.call('stream::send', { stream_name: 'todos', group_id: g, type: 'nudge', data: { n: 1 } })
  await w.call('stream::send', { stream_name: 'todos', group_id: g, type: 'other', data: 2 })
  await waitFor(() => group.seq === 7, 'seq 7')
  assert.deepEqual(
    changes.slice(1).map((c) => [c.type, c.id, c.seq, c.value, c.size]),
    [
      ['create', 'c', 3, { title: 'c' }, 3],
      ['update', 'a', 4, { title: 'a', done: true }, 3],
      ['delete', 'b', 5, { title: 'b' }, 2],
    ],
  )
  // Changes and events carry their commit time (the frame's timestamp).
  const after = Date.now()
  for (const c of changes.slice(1)) assert.ok(c.time >= before - 1000 && c.time <= after, 'commit time ' + c.time)
  assert.ok(sends[0][2] >= before - 1000 && sends[0][2] <= after, 'event commit time ' + sends[0][2])
  sends[0].pop()
  assert.deepEqual(sends, [[{ n: 1 }, 6]])
  assert.deepEqual(Object.fromEntries(group.items), { a: { title: 'a', done: true }, c: { title: 'c' } })

  // Handles of one group are shared and counted.
  const again = c.group('todos', g)
  assert.equal(again, group)
  again.close()
  await set('d', 1)
  await waitFor(() => group.seq === 8, 'seq 8 after one handle closed')
})

test('an item: its value, and only its changes', async (t) => {
  const w = writer(t)
  const g = uniq('item')
  const set = (id, data) => w.call('stream::set', { stream_name: 'todos', group_id: g, item_id: id, data })
  await set('x', 1)
  const c = client(t, GATEWAY)
  const item = c.item('todos', g, 'x')
  const seen = []
  item.subscribe((value, change) => seen.push([change.type, value]))
  await waitFor(() => item.seq === 1, 'the item snapshot')
  assert.equal(item.value, 1)
  await set('y', 'other item')
  await set('x', 2)
  await waitFor(() => item.value === 2, 'the update')
  assert.equal(item.seq, 3)
  assert.deepEqual(seen, [
    ['snapshot', 1],
    ['update', 2],
  ])
  const missing = c.item('todos', g, 'nope')
  await waitFor(() => missing.seq !== undefined, 'the snapshot of a missing item')
  assert.equal(missing.value, undefined)
})

test('call: a function result, and an error with its code', async (t) => {
  const c = client(t, GATEWAY, { callUrl: III })
  const g = uniq('call')
  const r = await c.call('stream::set', { stream_name: 'todos', group_id: g, item_id: 'a', data: 1 })
  assert.equal(r.seq, 1)
  await assert.rejects(c.call('nope::missing', {}), (e) => e instanceof ClientError && e.code === 'function_not_found')
  const noURL = client(t, GATEWAY)
  await assert.rejects(noURL.call('stream::get', {}), (e) => e.code === 'no_call_url')
})

test('call with optimistic: shown at once as pending, confirmed by its change; a refused write rolled back', async (t) => {
  const c = client(t, GATEWAY, { callUrl: III })
  const g = uniq('optimistic')
  const group = c.group('todos', g)
  await waitFor(() => group.seq === 0, 'the empty snapshot')
  const changes = []
  group.subscribe((items, ch) => changes.push({ ...ch, shown: items.get('a') }))
  const write = (data, extra) =>
    c.call('stream::set', { stream_name: 'todos', group_id: g, item_id: 'a', data, ...extra }, { optimistic: { stream: 'todos', group: g, id: 'a', data } })

  const p = write({ title: 'milk' })
  assert.deepEqual(changes, [{ type: 'create', id: 'a', seq: 0, value: { title: 'milk' }, pending: true, shown: { title: 'milk' } }])
  assert.equal((await p).seq, 1)
  await waitFor(() => group.seq === 1 && changes.length === 2, 'the confirmation')
  assert.ok(!changes[1].pending, 'confirmed')
  assert.deepEqual(changes[1].shown, { title: 'milk' })

  // if_seq 0: the item must not exist, so the engine refuses it.
  await assert.rejects(write({ title: 'eggs' }, { if_seq: 0 }), (e) => e.code === 'conflict')
  assert.deepEqual(
    changes.slice(2).map((ch) => [ch.pending, ch.shown]),
    [
      [true, { title: 'eggs' }],
      [false, { title: 'milk' }],
    ],
  )
  assert.deepEqual(group.items.get('a'), { title: 'milk' })
  assert.equal(group.seq, 1)
})
