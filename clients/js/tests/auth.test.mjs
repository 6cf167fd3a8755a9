// Tokens: a refusal, a refresh before exp, a join the token does not allow.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ENGINE_STREAM, client, now, sign, sleep, uniq, waitFor } from './helpers.mjs'

for (const transport of ['websocket', 'sse']) {
  test(`${transport}: a refused token closes the client with an error; it does not retry, and is never live`, async (t) => {
    const c = client(t, ENGINE_STREAM, { transport, token: sign({ sub: 'u', exp: now() + 60 }, 'another secret, 32 bytes or more..') })
    const errors = []
    c.on('error', (e) => errors.push(e.code))
    const states = []
    c.on('state', (s) => states.push(s))
    const group = c.group('todos', uniq('refused'))
    await waitFor(() => c.state === 'closed', 'closed')
    assert.equal(c.error.code, 'unauthorized')
    assert.deepEqual(errors, ['unauthorized'])
    assert.equal(group.seq, undefined)
    assert.deepEqual(states, ['closed'])
  })

  test(`${transport}: a client with no group is not live before the gateway took its token`, async (t) => {
    const c = client(t, ENGINE_STREAM, { transport, token: sign({ sub: 'u', exp: now() + 60 }, 'another secret, 32 bytes or more..') })
    const states = []
    c.on('state', (s) => states.push(s))
    await waitFor(() => c.state === 'closed', 'closed')
    assert.deepEqual(states, ['closed'])
  })

  test(`${transport}: getToken: one more try after a refusal, then closed`, async (t) => {
    let calls = 0
    const c = client(t, ENGINE_STREAM, {
      transport,
      getToken: async () => {
        calls++
        return sign({ sub: 'u', exp: now() + 60 }, 'another secret, 32 bytes or more..')
      },
      backoff: { min: 10, max: 20 },
    })
    c.group('todos', uniq('refused'))
    await waitFor(() => c.state === 'closed', 'closed')
    await sleep(500)
    assert.equal(calls, 2)
    assert.equal(c.error.code, 'unauthorized')
  })

  test(`${transport}: a fresh token refused in-band is reported; the connection stays`, async (t) => {
    let calls = 0
    const c = client(t, ENGINE_STREAM, {
      transport,
      // The second token is of another sub: the gateway refuses it.
      getToken: async () => sign({ sub: ++calls === 1 ? 'u' : 'v', exp: now() + 6 }),
    })
    const errors = []
    c.on('error', (e) => errors.push(e.code))
    const group = c.group('todos', uniq('refresh-refused'))
    await waitFor(() => c.state === 'live' && group.seq !== undefined, 'live')
    await waitFor(() => errors.length, 'the refusal reported', 8000)
    assert.deepEqual(errors, ['unauthorized'])
    assert.equal(calls, 2)
  })
}

for (const transport of ['websocket', 'sse'])
  test(`${transport}: getToken before exp: the fresh token goes in-band, the connection stays`, async (t) => {
    let calls = 0
    const c = client(t, ENGINE_STREAM, {
      transport,
      getToken: async () => {
        calls++
        return sign({ sub: 'u', exp: now() + 7 })
      },
    })
    const states = []
    c.on('state', (s) => states.push(s))
    const group = c.group('todos', uniq('refresh'))
    await waitFor(() => c.state === 'live' && group.seq !== undefined, 'live')
    const firstExp = now() + 7
    await waitFor(() => calls === 2, 'a refresh', 8000)
    // Past the first token's exp the gateway would close the connection
    // (4001, or the end of the SSE stream) had the fresh token not moved it.
    await waitFor(() => now() > firstExp + 1, 'past the first exp', 10000)
    assert.equal(c.state, 'live')
    assert.deepEqual(states, ['resyncing', 'live'])
    assert.equal(calls, 2)
  })

test('a join the token does not allow is refused; the others go on', async (t) => {
  const c = client(t, ENGINE_STREAM, { token: sign({ sub: 'u', exp: now() + 60, streams: ['open/*'] }) })
  const errors = []
  c.on('error', (e) => errors.push(e.code))
  const denied = c.group('closed', 'g')
  const changes = []
  denied.subscribe((_, ch) => changes.push(ch.type))
  const allowed = c.group('open', uniq('g'))
  await waitFor(() => denied.denied && allowed.seq !== undefined, 'the answers')
  assert.deepEqual(changes, ['unauthorized'])
  assert.deepEqual(errors, ['unauthorized'])
  await waitFor(() => c.state === 'live', 'live')
})
