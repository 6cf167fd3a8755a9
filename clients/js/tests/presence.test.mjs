// Presence, against the engine's stream listener, where tokens give
// identities; compat/jsclient_test.go runs it with --presence-grace 1s and
// --presence-max-members 3.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ENGINE_STREAM, III, client, control, now, sign, sleep, uniq, waitFor } from './helpers.mjs'

/** A client whose token's sub is sub. */
const as = (t, sub, opts = {}) => client(t, opts.url || ENGINE_STREAM, { token: sign({ sub, exp: now() + 600 }), backoff: { min: 10, max: 50 }, ...opts })

/** Joins g with presence and records what its presence shows. */
function watch(c, g, presence = true) {
  const group = c.group('rooms', g, { presence })
  const seen = []
  group.presence.subscribe((members, change) => seen.push({ ...change, size: members.size }))
  return { group, p: group.presence, seen }
}

/** How many times identity was announced as joining: join events and sync's joined. */
const joins = (seen, identity) =>
  seen.filter((c) => (c.type === 'join' && c.member.identity === identity) || (c.type === 'sync' && c.joined.some((m) => m.identity === identity))).length

test('presence: two connections of one identity are one member with connections 2; it leaves after the grace', async (t) => {
  const g = uniq('two')
  const obs = watch(as(t, 'obs'), g)
  await waitFor(() => obs.p.members.has('obs'), 'the observer in its own sync')
  const a1 = as(t, 'ada')
  const a2 = as(t, 'ada')
  watch(a1, g, { meta: { name: 'Ada' } })
  const two = watch(a2, g)
  await waitFor(() => obs.p.members.get('ada')?.connections === 2, 'ada with 2 connections')
  assert.equal(obs.p.members.size, 2)
  assert.equal(obs.p.count, 2)
  assert.deepEqual(obs.p.members.get('ada').meta, { name: 'Ada' })
  assert.equal(joins(obs.seen, 'ada'), 1)
  await waitFor(() => two.p.members.get('ada')?.connections === 2 && two.p.members.has('obs'), 'the second connection sees the same')

  a1.close()
  await waitFor(() => obs.p.members.get('ada')?.connections === 1, 'ada down to 1 connection after the grace')
  const closed = Date.now()
  a2.close()
  await waitFor(() => !obs.p.members.has('ada'), 'ada left')
  const after = Date.now() - closed
  const leave = obs.seen.at(-1)
  assert.equal(leave.type, 'leave')
  assert.equal(leave.member.identity, 'ada')
  assert.equal(leave.member.connections, 0)
  // Not before the grace (1 s); the gateway tells within a flush or two.
  assert.ok(after >= 900 && after < 4000, `leave ${after} ms after the last connection closed`)
  t.diagnostic(`leave seen ${after} ms after the last connection closed (--presence-grace 1s)`)
  assert.equal(joins(obs.seen, 'ada'), 1)
  // Both connections may arrive within one flush (a join with 2).
  const told = obs.seen.filter((c) => c.member?.identity === 'ada').map((c) => c.type + ' ' + c.member.connections)
  assert.ok(['join 1,update 2,update 1,leave 0', 'join 2,update 1,leave 0'].includes(told.join()), 'the observer was told: ' + told)
})

test('presence: setMeta updates the member for every subscriber; the group resumes, no snapshot', async (t) => {
  const g = uniq('meta')
  const obs = watch(as(t, 'obs'), g)
  const ada = watch(as(t, 'ada'), g, { meta: { name: 'Ada' } })
  const changes = []
  ada.group.subscribe((_, c) => changes.push(c.type))
  await waitFor(() => obs.p.members.get('ada')?.meta?.name === 'Ada' && ada.group.seq !== undefined, 'ada with her meta')
  ada.p.setMeta({ name: 'Ada L.', color: '#f80' })
  await waitFor(() => obs.p.members.get('ada')?.meta?.name === 'Ada L.', 'the new meta at the observer')
  await waitFor(() => ada.p.members.get('ada')?.meta?.name === 'Ada L.', 'the new meta at ada')
  const update = obs.seen.findLast((c) => c.member?.identity === 'ada')
  assert.equal(update.type, 'update')
  assert.deepEqual(update.member.meta, { name: 'Ada L.', color: '#f80' })
  assert.equal(obs.p.members.get('ada').connections, 1)
  assert.equal(joins(obs.seen, 'ada'), 1)
  assert.deepEqual(changes, ['snapshot'])
})

test('presence: a meta over the limit is refused; the group goes on without presence', async (t) => {
  const c = as(t, 'big')
  const errors = []
  c.on('error', (e) => errors.push(e.code))
  const { group, p } = watch(c, uniq('big'), { meta: { blob: 'x'.repeat(2000) } })
  await waitFor(() => group.seq !== undefined, 'the group without presence')
  assert.deepEqual(errors, ['presence_meta_too_large'])
  assert.equal(p.error.code, 'presence_meta_too_large')
  assert.equal(p.count, undefined)
})

test('presence: past --presence-max-members, counts only; pages through stream::presence', async (t) => {
  const g = uniq('large')
  const obs = watch(as(t, 'obs', { callUrl: III }), g)
  await waitFor(() => obs.p.count === 1, 'the observer alone')
  const others = ['m1', 'm2', 'm3'].map((id) => as(t, id))
  for (const c of others) watch(c, g)
  await waitFor(() => obs.p.large && obs.p.count === 4, 'counts only, 4 members')
  assert.equal(obs.p.members.size, 0)
  assert.deepEqual(obs.seen.at(-1), { type: 'count', count: 4, size: 0 })

  const first = await obs.p.page({ limit: 2 })
  assert.deepEqual(
    first.members.map((m) => [m.identity, m.connections]),
    [['m1', 1], ['m2', 1]],
  )
  assert.equal(first.count, 4)
  assert.equal(first.more, true)
  const rest = await obs.p.page({ after: 'm2' })
  assert.deepEqual(
    rest.members.map((m) => m.identity),
    ['m3', 'obs'],
  )
  assert.equal(rest.more, false)

  // Back to the limit: a sync, members again.
  others[0].close()
  await waitFor(() => !obs.p.large && obs.p.members.size === 3, 'members again')
  const sync = obs.seen.at(-1)
  assert.equal(sync.type, 'sync')
  assert.deepEqual([...obs.p.members.keys()], ['m2', 'm3', 'obs'])
})

test('presence survives a reconnect: a fresh sync replaces the members, no identity joins twice', async (t) => {
  const g = uniq('reconnect')
  const { addr } = await control('/proxy?target=' + new URL(ENGINE_STREAM).host)
  const obsClient = as(t, 'obs', { url: 'ws://' + addr })
  const obs = watch(obsClient, g)
  await waitFor(() => obs.p.members.has('obs'), 'the observer in its own sync')
  const ada = watch(as(t, 'ada'), g)
  await waitFor(() => obs.p.members.size === 2 && ada.p.members.size === 2, 'both members at both')
  const before = obs.seen.length
  const states = []
  obsClient.on('state', (s) => states.push(s))
  await control('/proxy/cut?addr=' + addr)
  await waitFor(() => obs.seen.length > before && obsClient.state === 'live', 'a fresh sync after the reconnect')
  assert.ok(states.includes('offline'), 'states ' + states)
  const sync = obs.seen.at(-1)
  assert.equal(sync.type, 'sync')
  assert.deepEqual([sync.joined, sync.left], [[], []])
  assert.deepEqual([...obs.p.members.keys()].sort(), ['ada', 'obs'])
  assert.equal(joins(obs.seen, 'ada'), 1)
  assert.equal(joins(obs.seen, 'obs'), 1)
  // The reconnect came within the grace: past it, ada saw neither a leave nor a join of obs.
  await sleep(1500)
  assert.deepEqual(
    ada.seen.filter((c) => c.type !== 'sync' && c.member?.identity === 'obs').map((c) => c.type),
    [],
  )
  assert.equal(ada.p.members.get('obs').connections, 1)
})

test('presence over SSE: the one stream carries it; an SSE and a WebSocket connection of one identity are one member', async (t) => {
  const g = uniq('sse')
  const sse = watch(as(t, 'sse', { transport: 'sse' }), g, { meta: { via: 'sse' } })
  await waitFor(() => sse.group.seq !== undefined && sse.p.members.has('sse'), 'the snapshot and the member over SSE')
  assert.equal(sse.p.error, undefined)
  const ws = watch(as(t, 'sse'), g)
  await waitFor(() => sse.p.members.get('sse')?.connections === 2, 'the WebSocket connection counted over SSE')
  assert.deepEqual(sse.p.members.get('sse').meta, { via: 'sse' })
  assert.equal(joins(sse.seen, 'sse'), 1)
  await waitFor(() => ws.p.members.get('sse')?.connections === 2, 'the WebSocket side sees the same')
})
