// Compatibility test: iii's RBAC worker scenarios with the real npm
// iii-sdk against a trine engine listener configured as iii configures
// one (see ../rbac_test.go, which runs it and serves the auth function,
// the middleware, the hooks and the test functions from a Go worker).
//
//   III_URL=ws://trusted III_RBAC_URL=ws://public node --test rbac.mjs

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { registerWorker } from 'iii-sdk'

const III_URL = process.env.III_URL
const RBAC_URL = process.env.III_RBAC_URL
if (!III_URL || !RBAC_URL) {
  console.error('compat/iii-node/rbac.mjs: set III_URL and III_RBAC_URL')
  process.exit(2)
}
const TEST_TIMEOUT = 20_000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// The trusted side, on the internal listener.
const iii = registerWorker(III_URL, { otel: { enabled: false } })
after(() => iii.shutdown())

async function rbacClient(token, fn) {
  const headers = token ? { 'x-test-token': token } : {}
  const client = registerWorker(RBAC_URL, { headers, otel: { enabled: false } })
  try {
    return await fn(client)
  } finally {
    await client.shutdown()
  }
}

// What the auth function and hooks saw since the last look.
const seen = () => iii.trigger({ function_id: 'test::rbac-worker::calls', payload: {} })

test('a valid token calls its allowed function through the middleware', { timeout: TEST_TIMEOUT }, async () => {
  await seen()
  await rbacClient('valid-token', async (c) => {
    const r = await c.trigger({ function_id: 'test::ew::valid-token-echo', payload: { msg: 'hello' } })
    assert.equal(r.function, 'test::ew::valid-token-echo')
    assert.equal(r.echoed.msg, 'hello')
    assert.equal(r.echoed._intercepted, true)
    assert.equal(r.echoed._caller, 'user-1')
  })
  assert.deepEqual((await seen()).filter((s) => s.startsWith('auth')), ['auth valid-token'])
})

test('exposed functions are callable; private ones are not', { timeout: TEST_TIMEOUT }, async () => {
  await rbacClient('', async (c) => {
    const r = await c.trigger({ function_id: 'test::ew::public::echo', payload: { n: 1 } })
    assert.equal(r.echoed.n, 1)
    assert.equal(r.echoed._caller, 'anonymous')
    await assert.rejects(c.trigger({ function_id: 'test::ew::private', payload: {} }), /forbidden|not exposed/)
    // Even the allowed function of another token.
    await assert.rejects(c.trigger({ function_id: 'test::ew::valid-token-echo', payload: {} }), /not exposed/)
  })
})

test('a metadata filter exposes functions registered with that metadata', { timeout: TEST_TIMEOUT }, async () => {
  // iii-sdk 0.22: registerFunction(id, handler, options).
  iii.registerFunction('test::ew::meta-public', async (data) => ({ meta_echoed: data }), { metadata: { ew_public: true } })
  iii.registerFunction('test::ew::meta-private', async () => ({ private: true }), { metadata: { ew_public: false } })
  await sleep(500)
  await rbacClient('valid-token', async (c) => {
    const r = await c.trigger({ function_id: 'test::ew::meta-public', payload: { m: 1 } })
    assert.equal(r.meta_echoed.m, 1)
    await assert.rejects(c.trigger({ function_id: 'test::ew::meta-private', payload: {} }), /not exposed/)
  })
})

test('forbidden_functions beat expose_functions', { timeout: TEST_TIMEOUT }, async () => {
  await rbacClient('restricted-token', async (c) => {
    await assert.rejects(c.trigger({ function_id: 'test::ew::public::echo', payload: {} }), /forbidden_functions/)
  })
})

test('the trigger type hook denies a registration', { timeout: TEST_TIMEOUT }, async () => {
  await seen()
  await rbacClient('valid-token', async (c) => {
    c.registerTriggerType({ id: 'denied-tt::test', description: 'Should be denied' }, {
      async registerTrigger() {},
      async unregisterTrigger() {},
    })
    await sleep(1000)
  })
  assert.ok((await seen()).includes('trigger-type denied-tt::test user-1'))
})

test('the trigger hook denies a registration', { timeout: TEST_TIMEOUT }, async () => {
  await seen()
  await rbacClient('valid-token', async (c) => {
    c.registerTrigger({ type: 'stream', function_id: 'denied-trig::my-fn', config: { stream_name: 'rbac' } })
    await sleep(1000)
  })
  assert.ok((await seen()).includes('trigger denied-trig::my-fn user-1'))
})

test('the function hook denies a registration', { timeout: TEST_TIMEOUT }, async () => {
  await rbacClient('valid-token', async (c) => {
    c.registerFunction('denied::blocked-fn', async () => ({ should: 'not reach' }))
    await sleep(1000)
    await assert.rejects(iii.trigger({ function_id: 'denied::blocked-fn', payload: {} }), /not found|function_not_found/)
  })
})

test('function_registration_prefix is applied, and stripped on invocation', { timeout: TEST_TIMEOUT }, async () => {
  await rbacClient('prefix-token', async (c) => {
    c.registerFunction('prefixed-echo', async (data) => ({ echoed: data }))
    await sleep(1000)
    const r = await iii.trigger({ function_id: 'test-prefix::prefixed-echo', payload: { msg: 'prefix-test' } })
    assert.equal(r.echoed.msg, 'prefix-test')
    await assert.rejects(iii.trigger({ function_id: 'prefixed-echo', payload: {} }), /not found|function_not_found/)
  })
})

test('an auth function that throws refuses the connection with 401', { timeout: TEST_TIMEOUT }, async () => {
  const status = await new Promise((resolve, reject) => {
    const req = request(RBAC_URL.replace(/^ws/, 'http'), {
      headers: { 'x-test-token': 'no-such-token', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    })
    req.on('response', (res) => { res.resume(); resolve(res.statusCode) })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode) })
    req.on('error', reject)
    req.end()
  })
  assert.equal(status, 401)
})
