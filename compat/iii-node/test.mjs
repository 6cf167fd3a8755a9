// Compatibility test: the real npm package iii-sdk (pinned in package.json)
// talking to a trine engine's iii listener.
//
//   III_URL=ws://127.0.0.1:PORT III_HTTP_URL=http://127.0.0.1:PORT node --test test.mjs
//
// III_URL       the engine's iii worker listener (--iii-addr)
// III_HTTP_URL  the engine's HTTP trigger listener
// III_COMPAT_OTEL=0 turns off the SDK's OpenTelemetry socket (<III_URL>/otel);
//               it is on by default, as it is for every real user of the SDK.
//
// A Go worker must be connected that serves go::echo, go::call, go::bind,
// go::unbind, go::cut and go::fail (see ../iiinode_test.go); go::cut cuts
// this worker's TCP connections (the test runs it through a proxy).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { registerWorker, TriggerAction, InvocationError } from 'iii-sdk'
import { createChannel, createStream } from 'iii-sdk/helpers'
import { http } from '@iii-dev/helpers/http'

const III_URL = process.env.III_URL
const III_HTTP_URL = (process.env.III_HTTP_URL ?? '').replace(/\/+$/, '')
if (!III_URL || !III_HTTP_URL) {
  console.error('compat/iii-node: set III_URL (ws://host:port) and III_HTTP_URL (http://host:port)')
  process.exit(2)
}

const RUN = `${process.pid}-${Date.now().toString(36)}`
const WORKER_NAME = `compat-iii-node-${RUN}`
const TEST_TIMEOUT = 20_000

let iii

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Retries fn until it stops throwing; rethrows its last error after timeoutMs.
async function eventually(fn, timeoutMs = 5_000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      if (Date.now() >= deadline) throw err
    }
    await sleep(intervalMs)
  }
}

// Resolves with the first value passed to the returned `hit`, or rejects after ms.
function waitForCall(ms, what) {
  let hit
  const promise = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} was not called within ${ms} ms`)), ms)
    hit = (value) => {
      clearTimeout(timer)
      resolve(value)
    }
  })
  return { promise, hit }
}

const call = (function_id, payload, extra = {}) => iii.trigger({ function_id, payload, ...extra })

// Asserts that promise rejects with an InvocationError and returns the error.
async function invocationError(promise, what) {
  let err
  try {
    const result = await promise
    assert.fail(`${what}: expected an error, got result ${JSON.stringify(result)}`)
  } catch (e) {
    err = e
  }
  if (err instanceof assert.AssertionError) throw err
  assert.ok(err instanceof InvocationError, `${what}: expected InvocationError, got ${err?.name}: ${err?.message}`)
  return err
}

const pick = (obj, keys) => Object.fromEntries(keys.filter((k) => obj[k] !== undefined).map((k) => [k, obj[k]]))
const byName = (a, b) => String(a.name).localeCompare(String(b.name))

before(async () => {
  iii = registerWorker(III_URL, {
    workerName: WORKER_NAME,
    workerDescription: 'trine compat test (iii-sdk for Node)',
    invocationTimeoutMs: 10_000,
    otel: { enabled: process.env.III_COMPAT_OTEL !== '0' },
  })
  // The SDK exposes no "connected" event; its first call waits for the socket.
  try {
    await call('engine::functions::list', {})
  } catch (err) {
    throw new Error(`cannot call engine::functions::list on ${III_URL}: ${err.message}`)
  }
})

after(async () => {
  if (!iii) return
  let timer
  const timeout = new Promise((resolve) => (timer = setTimeout(() => {
    console.error('compat/iii-node: iii.shutdown() did not finish within 10 s')
    resolve()
  }, 10_000)))
  await Promise.race([iii.shutdown(), timeout])
  clearTimeout(timer)
})

test('1. registers functions; engine::functions::list and engine::workers::list show them', { timeout: TEST_TIMEOUT }, async () => {
  const ids = ['node::hello', 'node::compat::second']
  iii.registerFunction(ids[0], async (data) => ({ hello: data?.name ?? 'world' }), { description: 'says hello' })
  iii.registerFunction(ids[1], async () => 2)

  await eventually(async () => {
    const res = await call('engine::functions::list', {})
    assert.ok(Array.isArray(res?.functions), `engine::functions::list: want {functions:[...]}, got ${JSON.stringify(res)}`)
    const listed = new Set(res.functions.map((f) => f.function_id))
    for (const id of ids) assert.ok(listed.has(id), `engine::functions::list lacks ${id}: ${JSON.stringify(res.functions)}`)
    const hello = res.functions.find((f) => f.function_id === ids[0])
    assert.equal(hello.description, 'says hello', `description of ${ids[0]}`)
  })

  assert.deepEqual(await call(ids[0], { name: 'trine' }), { hello: 'trine' })

  // engine::workers::register is a void call the SDK sends after its
  // registrations, so the worker's metadata may show up a little later.
  await eventually(async () => {
    const res = await call('engine::workers::list', {})
    assert.ok(Array.isArray(res?.workers), `engine::workers::list: want {workers:[...]}, got ${JSON.stringify(res)}`)
    const me = res.workers.filter((w) => w.name === WORKER_NAME)
    assert.equal(me.length, 1, `engine::workers::list: want one worker named ${WORKER_NAME}, got ${JSON.stringify(res.workers)}`)
    assert.equal(me[0].runtime, 'node', `runtime of ${WORKER_NAME}: ${JSON.stringify(me[0])}`)
  })
})

test('2. calls the Go worker: go::echo', { timeout: TEST_TIMEOUT }, async () => {
  const input = { msg: 'hi from node', n: 7, nested: { list: [1, 'two', null, true] } }
  assert.deepEqual(await call('go::echo', input), { echo: input })
  assert.deepEqual(await call('go::echo', 'plain string'), { echo: 'plain string' })
})

test('3. is called by the Go worker: go::call -> node::double', { timeout: TEST_TIMEOUT }, async () => {
  iii.registerFunction('node::double', async (data) => {
    assert.equal(typeof data?.n, 'number', `node::double got ${JSON.stringify(data)}`)
    return { n: data.n * 2 }
  })
  const res = await call('go::call', { function_id: 'node::double', payload: { n: 21 } })
  assert.deepEqual(res, { n: 42 })
})

test('4. built-in stream module: stream::set/get/list/list_groups/update/delete', { timeout: TEST_TIMEOUT }, async () => {
  const stream_name = `compat-node-${RUN}`
  const group_id = 'g1'
  const key = (item_id) => ({ stream_name, group_id, item_id })

  let r = await call('stream::set', { ...key('a'), data: { name: 'a', count: 1 } })
  assert.deepEqual(r?.new_value, { name: 'a', count: 1 }, `set a (new): ${JSON.stringify(r)}`)
  assert.equal(r.old_value ?? null, null, `set a (new) old_value: ${JSON.stringify(r)}`)

  r = await call('stream::set', { ...key('a'), data: { name: 'a', count: 5 } })
  assert.deepEqual(pick(r, ['old_value', 'new_value']), { old_value: { name: 'a', count: 1 }, new_value: { name: 'a', count: 5 } }, 'set a (overwrite)')

  assert.deepEqual(await call('stream::get', key('a')), { name: 'a', count: 5 }, 'get a')
  assert.equal((await call('stream::get', key('missing'))) ?? null, null, 'get of a missing item')

  await call('stream::set', { ...key('b'), data: { name: 'b', count: 0 } })
  const list = await call('stream::list', { stream_name, group_id })
  assert.ok(Array.isArray(list), `stream::list: want an array, got ${JSON.stringify(list)}`)
  assert.deepEqual([...list].sort(byName), [{ name: 'a', count: 5 }, { name: 'b', count: 0 }], 'list')
  assert.deepEqual(await call('stream::list', { stream_name, group_id: 'empty' }), [], 'list of an empty group')

  const groups = await call('stream::list_groups', { stream_name })
  assert.deepEqual(groups, [group_id], 'list_groups')

  r = await call('stream::update', {
    ...key('a'),
    ops: [
      { type: 'increment', path: 'count', by: 2 },
      { type: 'set', path: 'tag', value: 'x' },
      { type: 'decrement', path: 'count', by: 1 },
    ],
  })
  assert.deepEqual(pick(r, ['old_value', 'new_value']), { old_value: { name: 'a', count: 5 }, new_value: { name: 'a', count: 6, tag: 'x' } }, 'update a')
  assert.ok(r.errors === undefined || (Array.isArray(r.errors) && r.errors.length === 0), `update errors: ${JSON.stringify(r.errors)}`)
  assert.deepEqual(await call('stream::get', key('a')), { name: 'a', count: 6, tag: 'x' }, 'get a after update')

  r = await call('stream::delete', key('a'))
  assert.deepEqual(r?.old_value, { name: 'a', count: 6, tag: 'x' }, `delete a: ${JSON.stringify(r)}`)
  assert.equal((await call('stream::get', key('a'))) ?? null, null, 'get a after delete')
  r = await call('stream::delete', key('a'))
  assert.equal(r?.old_value ?? null, null, `second delete of a: ${JSON.stringify(r)}`)
  assert.deepEqual(await call('stream::list', { stream_name, group_id }), [{ name: 'b', count: 0 }], 'list after delete')

  await call('stream::delete', key('b'))
})

test('4b. stream::define: a contract refuses an invalid stream::set with the pointer and the rule, and stores nothing', { timeout: TEST_TIMEOUT }, async () => {
  const stream_name = `compat-contract-${RUN}`
  const key = { stream_name, group_id: 'g', item_id: 'x' }
  const item_schema = { type: 'object', properties: { title: { type: 'string' }, done: { type: 'boolean' } }, required: ['title'], additionalProperties: false }
  const d = await call('stream::define', { stream_name, version: 1, item_schema })
  assert.deepEqual(d, { stream_name, version: 1, compatibility: 'BACKWARD' }, `define: ${JSON.stringify(d)}`)
  await call('stream::set', { ...key, data: { title: 'milk' } })
  let err = await invocationError(call('stream::set', { ...key, data: { title: 42 } }), 'invalid stream::set')
  assert.equal(err.code, 'invalid_argument', `invalid stream::set: ${err.code} ${err.message}`)
  assert.match(err.message, /\/title: expected string, got number/, `invalid stream::set: ${err.message}`)
  err = await invocationError(call('stream::update', { ...key, ops: [{ type: 'set', path: 'colour', value: 'red' }] }), 'invalid stream::update')
  assert.match(err.message, /\/colour: not allowed/, `invalid stream::update: ${err.message}`)
  assert.deepEqual(await call('stream::get', key), { title: 'milk' }, 'the item after refused writes')
  err = await invocationError(call('stream::define', { stream_name, version: 2, item_schema: { ...item_schema, properties: { title: { type: 'number' } } } }), 'incompatible define')
  assert.equal(err.code, 'conflict', `incompatible define: ${err.message}`)
  const schema = await call('engine::streams::schema', { stream_name })
  assert.equal(schema.current.version, 1, `schema: ${JSON.stringify(schema)}`)
  assert.deepEqual(schema.current.item_schema, item_schema)
})

test('4e. event schemas refuse an invalid or undeclared stream::send; state::define refuses an invalid state::set and state::update', { timeout: TEST_TIMEOUT }, async () => {
  const stream_name = `compat-events-${RUN}`
  const event_schemas = { typing: { type: 'object', properties: { user: { type: 'string' } }, required: ['user'] } }
  await call('stream::define', { stream_name, version: 1, item_schema: { type: 'object' }, event_schemas })
  const sent = await call('stream::send', { stream_name, group_id: 'g', type: 'typing', data: { user: 'ann' } })
  assert.ok(Number.isInteger(sent?.seq), `a valid event: ${JSON.stringify(sent)}`)
  let err = await invocationError(call('stream::send', { stream_name, group_id: 'g', type: 'typing', data: { user: 7 } }), 'invalid stream::send')
  assert.equal(err.code, 'invalid_argument', `invalid stream::send: ${err.code} ${err.message}`)
  assert.match(err.message, /\/user: expected string, got number/, `invalid stream::send: ${err.message}`)
  assert.match(err.message, /nothing was sent/, `invalid stream::send: ${err.message}`)
  err = await invocationError(call('stream::send', { stream_name, group_id: 'g', type: 'shout', data: {} }), 'undeclared event type')
  assert.equal(err.code, 'invalid_argument', `undeclared event type: ${err.code} ${err.message}`)
  assert.match(err.message, /shout/, `undeclared event type: ${err.message}`)

  const scope = `compat-state-contract-${RUN}`
  const item_schema = { type: 'object', properties: { n: { type: 'integer', maximum: 10 } }, required: ['n'] }
  const d = await call('state::define', { scope, version: 1, item_schema })
  assert.equal(d?.version, 1, `state::define: ${JSON.stringify(d)}`)
  await call('state::set', { scope, key: 'a', value: { n: 1 } })
  err = await invocationError(call('state::set', { scope, key: 'a', value: { n: 'one' } }), 'invalid state::set')
  assert.equal(err.code, 'invalid_argument', `invalid state::set: ${err.code} ${err.message}`)
  assert.match(err.message, /\/n: /, `invalid state::set: ${err.message}`)
  err = await invocationError(call('state::update', { scope, key: 'a', ops: [{ type: 'increment', path: 'n', by: 20 }] }), 'invalid state::update')
  assert.equal(err.code, 'invalid_argument', `invalid state::update: ${err.code} ${err.message}`)
  assert.match(err.message, /\/n: /, `invalid state::update: ${err.message}`)
  assert.deepEqual(await call('state::get', { scope, key: 'a' }), { n: 1 }, 'the value after refused writes')
  const schema = await call('engine::state::schema', { scope })
  assert.equal(schema?.current?.version, 1, `engine::state::schema: ${JSON.stringify(schema)}`)
})

test('4c. stream::define re-checks stored items: a break names them, migrate through an iii function converts them', { timeout: TEST_TIMEOUT }, async () => {
  const stream_name = `compat-evolve-${RUN}`
  const key = { stream_name, group_id: 'g', item_id: 'x' }
  await call('stream::define', { stream_name, version: 1, item_schema: { type: 'object', properties: { title: {} }, required: ['title'] } })
  await call('stream::set', { ...key, data: { title: 'milk' } })
  const item_schema = { type: 'object', properties: { title: { type: 'number' } }, required: ['title'] }
  let err = await invocationError(call('stream::define', { stream_name, version: 2, compatibility: 'NONE', item_schema }), 'breaking define')
  assert.equal(err.code, 'conflict', `breaking define: ${err.code} ${err.message}`)
  assert.match(err.message, /1 stored items fail version 2: \{"group_id":"g","item_id":"x","stream_name":"compat-evolve-[^"]+"\}; first: \/title: expected number, got string/, `breaking define: ${err.message}`)
  iii.registerFunction(`node::migrate::${RUN}`, async (input) => ({ title: String(input.data.title).length }))
  const d = await eventually(() => call('stream::define', { stream_name, version: 2, compatibility: 'NONE', item_schema, migrate: `node::migrate::${RUN}` }))
  assert.equal(d.version, 2, `migrating define: ${JSON.stringify(d)}`)
  assert.equal(d.checked.migrated, 1, `migrating define: ${JSON.stringify(d)}`)
  assert.deepEqual(await call('stream::get', key), { title: 4 }, 'the migrated item')
})

test('4d. request_format in draft-07 (as iii\'s Rust SDK writes it) is enforced; iii\'s parameter format is kept unchecked', { timeout: TEST_TIMEOUT }, async () => {
  const request_format = {
    $schema: 'http://json-schema.org/draft-07/schema#', title: 'AddInput', type: 'object', required: ['a', 'b'],
    properties: { a: { type: 'integer', format: 'int32' }, b: { $ref: '#/definitions/Operand' } },
    definitions: { Operand: { type: 'integer', format: 'uint32', minimum: 0.0 } },
  }
  iii.registerFunction(`node::add07::${RUN}`, async ({ a, b }) => a + b, { request_format })
  iii.registerFunction(`node::addpy::${RUN}`, async (data) => ({ got: data }), {
    request_format: { name: 'input', type: 'object', required: false, body: [{ name: 'a', type: 'number', required: true }] },
  })
  assert.equal(await eventually(() => call(`node::add07::${RUN}`, { a: 1, b: 2 })), 3)
  const err = await invocationError(call(`node::add07::${RUN}`, { a: 1, b: -1 }), 'a payload off the draft-07 format')
  assert.equal(err.code, 'invalid_argument', `draft-07 format: ${err.code} ${err.message}`)
  assert.match(err.message, /breaks its request_format: \/b: minimum/, `draft-07 format: ${err.message}`)
  assert.deepEqual(await eventually(() => call(`node::addpy::${RUN}`, 'anything')), { got: 'anything' })
  const info = await call('engine::functions::info', { function_id: `node::addpy::${RUN}` })
  assert.equal(info.request_format?.body?.[0]?.name, 'a', `info: ${JSON.stringify(info)}`)
})

test('5. createStream custom stream backed by a Map', { timeout: TEST_TIMEOUT }, async () => {
  const stream_name = `compat-custom-${RUN}`
  const store = new Map() // `${group_id}/${item_id}` -> data
  const calls = []
  const seen = (op, input) => {
    calls.push(op)
    assert.equal(input?.stream_name, stream_name, `custom ${op} got ${JSON.stringify(input)}`)
  }
  createStream(iii, stream_name, {
    async get(input) {
      seen('get', input)
      return store.get(`${input.group_id}/${input.item_id}`) ?? null
    },
    async set(input) {
      seen('set', input)
      const k = `${input.group_id}/${input.item_id}`
      const old_value = store.get(k)
      store.set(k, input.data)
      return { old_value, new_value: input.data }
    },
    async delete(input) {
      seen('delete', input)
      const k = `${input.group_id}/${input.item_id}`
      const old_value = store.get(k)
      store.delete(k)
      return { old_value }
    },
    async list(input) {
      seen('list', input)
      return [...store].filter(([k]) => k.startsWith(`${input.group_id}/`)).map(([, v]) => v)
    },
    async listGroups(input) {
      seen('listGroups', input)
      return [...new Set([...store.keys()].map((k) => k.split('/')[0]))]
    },
    async update() {
      throw new Error('iii-sdk does not register stream::update(<name>); the engine must not call it')
    },
  })
  const key = { stream_name, group_id: 'g', item_id: 'i1' }
  const since = (n) => calls.slice(n)

  let n = calls.length
  let r = await call('stream::set', { ...key, data: { count: 1 } })
  assert.deepEqual(r?.new_value, { count: 1 }, `custom set: ${JSON.stringify(r)}`)
  assert.deepEqual(store.get('g/i1'), { count: 1 }, 'Map after set')
  assert.ok(since(n).includes('set'), `stream::set did not reach the custom stream (calls: ${since(n)})`)

  n = calls.length
  assert.deepEqual(await call('stream::get', key), { count: 1 }, 'custom get')
  assert.deepEqual(since(n), ['get'], 'stream::get went to the custom get')

  n = calls.length
  assert.deepEqual(await call('stream::list', { stream_name, group_id: 'g' }), [{ count: 1 }], 'custom list')
  assert.deepEqual(since(n), ['list'], 'stream::list went to the custom list')

  n = calls.length
  assert.deepEqual(await call('stream::list_groups', { stream_name }), ['g'], 'custom list_groups')
  assert.deepEqual(since(n), ['listGroups'], 'stream::list_groups went to the custom listGroups')

  // createStream registers no stream::update(<name>): the engine has to run
  // the ops over the custom get/set, or the Map would not see the change.
  n = calls.length
  r = await call('stream::update', { ...key, ops: [{ type: 'increment', path: 'count', by: 2 }] })
  assert.deepEqual(pick(r, ['old_value', 'new_value']), { old_value: { count: 1 }, new_value: { count: 3 } }, 'custom update')
  assert.deepEqual(store.get('g/i1'), { count: 3 }, 'Map after update')
  assert.ok(since(n).includes('set'), `stream::update did not write through the custom set (calls: ${since(n)})`)

  n = calls.length
  r = await call('stream::delete', key)
  assert.deepEqual(r?.old_value, { count: 3 }, `custom delete: ${JSON.stringify(r)}`)
  assert.equal(store.has('g/i1'), false, 'Map after delete')
  assert.ok(since(n).includes('delete'), `stream::delete did not reach the custom stream (calls: ${since(n)})`)

  assert.equal((await call('stream::get', key)) ?? null, null, 'custom get after delete')
})

test('6. http trigger: POST /compat/items/:id, and 404 for an unknown route', { timeout: TEST_TIMEOUT }, async () => {
  let got
  iii.registerFunction('node::http::items', async (req) => {
    got = req
    return { status_code: 201, headers: { 'x-compat': 'yes' }, body: { ok: true, id: req?.path_params?.id } }
  })
  const trigger = iii.registerTrigger({
    type: 'http',
    function_id: 'node::http::items',
    config: { api_path: 'compat/items/:id', http_method: 'POST' },
  })
  try {
    // The trigger travels over the WebSocket and the request over HTTP: a
    // round trip on the socket first, then retry briefly while the route is 404.
    await call('engine::functions::list', {})
    const url = `${III_HTTP_URL}/compat/items/42?x=1`
    const res = await eventually(async () => {
      const res = await fetch(url, { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } })
      if (res.status === 404) {
        await res.body?.cancel()
        throw new Error(`POST ${url}: still 404 after the http trigger was registered`)
      }
      return res
    }, 3_000)
    const text = await res.text()
    assert.equal(res.status, 201, `POST ${url}: status ${res.status}, body ${text}`)
    assert.equal(res.headers.get('x-compat'), 'yes', 'x-compat response header')
    assert.match(res.headers.get('content-type') ?? '', /application\/json/, 'response content-type')
    assert.deepEqual(JSON.parse(text), { ok: true, id: '42' }, 'response body')

    assert.ok(got, 'the handler was not called')
    assert.deepEqual(got.path_params, { id: '42' }, 'path_params')
    assert.deepEqual([].concat(got.query_params?.x), ['1'], `query_params: ${JSON.stringify(got.query_params)}`)
    assert.deepEqual(got.body, { a: 1 }, 'body')
    assert.equal(String(got.method).toUpperCase(), 'POST', 'method')
    const ct = Object.entries(got.headers ?? {}).find(([k]) => k.toLowerCase() === 'content-type')
    assert.match(String(ct?.[1] ?? ''), /application\/json/, `request headers: ${JSON.stringify(got.headers)}`)
    // The route is listed as iii lists it.
    const listed = await call('engine::registered-triggers::list', { function_id: 'node::http::items' })
    assert.equal(listed?.registered_triggers?.length, 1, `registered-triggers::list: ${JSON.stringify(listed)}`)
    assert.equal(listed.registered_triggers[0].trigger_type, 'http', `registered-triggers::list: ${JSON.stringify(listed)}`)
  } finally {
    trigger.unregister()
  }

  const missing = `${III_HTTP_URL}/compat/no-such-route-${RUN}`
  const res = await fetch(missing)
  const text = await res.text()
  assert.equal(res.status, 404, `GET ${missing}: status ${res.status}, body ${text}`)
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, `404 content-type (body ${text})`)
  let parsed
  assert.doesNotThrow(() => (parsed = JSON.parse(text)), `404 body is not JSON: ${text}`)
  assert.equal(typeof parsed, 'object', `404 body: ${text}`)
})

test('7. void call: resolves at once, the function runs within 3 s', { timeout: TEST_TIMEOUT }, async () => {
  const { promise, hit } = waitForCall(3_000, 'node::void::sink')
  iii.registerFunction('node::void::sink', async (data) => {
    hit(data)
    return { ignored: true }
  })
  const started = Date.now()
  const r = await iii.trigger({ function_id: 'node::void::sink', payload: { run: RUN }, action: TriggerAction.Void() })
  assert.equal(r ?? null, null, `void trigger resolved with ${JSON.stringify(r)}`)
  assert.ok(Date.now() - started < 1_000, 'void trigger did not resolve at once')
  assert.deepEqual(await promise, { run: RUN }, 'payload seen by the void-called function')
})

test('8. errors: thrown handler error, unknown function, Go worker error', { timeout: TEST_TIMEOUT }, async () => {
  const message = `compat boom ${RUN}`
  iii.registerFunction('node::throws', async () => {
    throw new Error(message)
  })
  let err = await invocationError(call('node::throws', {}), 'node::throws')
  assert.equal(typeof err.code, 'string', `code of a thrown error: ${err.code}`)
  assert.ok(err.code.length > 0 && err.code !== 'TIMEOUT' && err.code !== 'UNKNOWN', `code of a thrown error: ${err.code} (${err.message})`)
  assert.ok(err.message.includes(message), `message of a thrown error: ${err.message}`)

  const unknown = `node::no-such-function-${RUN}`
  err = await invocationError(call(unknown, {}), unknown)
  assert.equal(err.code, 'function_not_found', `unknown function: ${err.message}`)

  err = await invocationError(call('go::fail', {}), 'go::fail')
  // A gRPC worker's forbidden reaches an iii worker in iii's spelling.
  assert.equal(err.code, 'FORBIDDEN', `go::fail: ${err.message}`)
  assert.ok(err.message.length > 'FORBIDDEN: '.length, `go::fail message: ${err.message}`)
})

test('9. a stream trigger calls a Node function', { timeout: TEST_TIMEOUT }, async () => {
  const stream_name = `compat-trigger-${RUN}`
  const { promise, hit } = waitForCall(5_000, 'node::stream::changed')
  iii.registerFunction('node::stream::changed', async (event) => {
    hit(event)
    return null
  })
  iii.registerTrigger({ type: 'stream', function_id: 'node::stream::changed', config: { stream_name } })
  // Registrations travel in order on the socket: once this call is
  // answered, the trigger is in place.
  await call('engine::functions::list', {})
  await eventually(async () => {
    const listed = await call('engine::registered-triggers::list', { function_id: 'node::stream::changed' })
    assert.equal(listed?.registered_triggers?.length, 1, `stream trigger not listed: ${JSON.stringify(listed)}`)
  })
  await call('stream::set', { stream_name, group_id: 'g', item_id: 'i', data: { v: 1 } })
  const event = await promise
  // iii's wrapper: {type:"stream", timestamp, streamName, groupId, id, event:{type, data}}
  assert.equal(event?.type, 'stream', `stream trigger payload: ${JSON.stringify(event)}`)
  assert.equal(event.event?.type, 'create', `event.type: ${JSON.stringify(event)}`)
  assert.equal(event.streamName, stream_name, `streamName: ${JSON.stringify(event)}`)
  assert.equal(event.groupId, 'g', `groupId: ${JSON.stringify(event)}`)
  assert.equal(event.id, 'i', `id: ${JSON.stringify(event)}`)
  assert.deepEqual(event.event?.data, { v: 1 }, `event.data: ${JSON.stringify(event)}`)
})

test('10. data channel: written and closed before the reader attaches, read whole by a function', { timeout: TEST_TIMEOUT }, async () => {
  iii.registerFunction('node::channel::sum', async ({ reader }) => {
    const bytes = await reader.readAll()
    return { count: bytes.length, sum: [...bytes].reduce((a, b) => a + b, 0) }
  })
  const channel = await createChannel(iii)
  assert.equal(channel.readerRef?.direction, 'read', `reader ref: ${JSON.stringify(channel.readerRef)}`)
  channel.writer.stream.write(Buffer.from([12, 34, 56, 78, 90]))
  channel.writer.stream.end()
  await sleep(100) // the writer flushes and closes before anyone reads
  assert.deepEqual(await call('node::channel::sum', { reader: channel.readerRef }), { count: 5, sum: 270 })
})

test('11. a trigger type provided by the Node worker: a Go worker binds to it, the provider fires it', { timeout: TEST_TIMEOUT }, async () => {
  const type = `compat-ticker-${RUN}`
  const bound = new Map()
  const { promise: unbound, hit: hitUnbound } = waitForCall(5_000, 'the provider\'s unregisterTrigger')
  iii.registerTriggerType({ id: type, description: 'fires when the test says so' }, {
    async registerTrigger(cfg) {
      if (cfg.config?.refuse) throw new Error('refused by the compat provider')
      bound.set(cfg.id, cfg)
    },
    async unregisterTrigger(cfg) {
      bound.delete(cfg.id)
      hitUnbound(cfg.id)
    },
  })
  await call('engine::functions::list', {}) // messages apply in order: the type is registered

  const id = `compat-tick-${RUN}`
  assert.deepEqual(await call('go::bind', { id, type, function_id: 'go::echo', config: { every: 'call' } }), { id })
  const cfg = bound.get(id)
  assert.ok(cfg, `the provider never got trigger ${id}: ${JSON.stringify([...bound.keys()])}`)
  assert.equal(cfg.function_id, 'go::echo', `trigger config: ${JSON.stringify(cfg)}`)
  assert.deepEqual(cfg.config, { every: 'call' }, `trigger config: ${JSON.stringify(cfg)}`)
  // The provider fires the trigger by calling its function.
  assert.deepEqual(await call(cfg.function_id, { tick: 1 }), { echo: { tick: 1 } })

  const refused = await invocationError(call('go::bind', { id: `${id}-refused`, type, function_id: 'go::echo', config: { refuse: true } }), 'go::bind refused')
  assert.equal(refused.code, 'trigger_registration_failed', `refused binding: ${refused.message}`)
  assert.ok(refused.message.includes('refused by the compat provider'), `refused binding: ${refused.message}`)

  await call('go::unbind', { id })
  assert.equal(await unbound, id, 'unregisterTrigger got another id')
})

test('12. reconnect: after a cut connection the SDK reattaches and replays; its functions answer again', { timeout: 30_000 }, async () => {
  iii.registerFunction('node::survivor', async (d) => ({ alive: d }))
  assert.deepEqual(await call('go::call', { function_id: 'node::survivor', payload: 1 }), { alive: 1 })
  const mine = async () => (await call('engine::workers::list', {})).workers.filter((w) => w.name === WORKER_NAME)
  const before = await mine()
  assert.equal(before.length, 1, `before the cut: ${JSON.stringify(before)}`)

  assert.deepEqual(await call('go::cut', {}), { cut: true })
  await sleep(300) // the cut happens 100 ms after go::cut answers
  // The SDK reconnects (first retry after about 1 s), sends reattach with
  // the old id and token, and replays its registrations.
  await eventually(async () => {
    assert.deepEqual(await call('go::call', { function_id: 'node::survivor', payload: 2 }, { timeoutMs: 2_000 }), { alive: 2 })
  }, 15_000, 250)
  await eventually(async () => {
    const after = await mine()
    assert.equal(after.length, 1, `after the reconnect: ${JSON.stringify(after)}`)
    assert.notEqual(after[0].id, before[0].id, 'the worker kept its old session')
  })
})

test('13. http trigger with data channels: a response streamed by http(), a request body read from request_body', { timeout: TEST_TIMEOUT }, async () => {
  const base = `compat/stream-${RUN}`
  // http() hands the handler the response channel as res: set_status and
  // set_headers messages, then the body bytes, then the close.
  iii.registerFunction('node::http::streamed', http(async (req, res) => {
    res.status(201)
    res.headers({ 'content-type': 'text/plain', 'x-stream': 'yes' })
    res.stream.write('hello ')
    // end() flushes 'world' and then closes the channel itself; closing
    // before it has (res.close() right after end()) would drop 'world'.
    await new Promise((resolve, reject) => res.stream.end('world', (err) => (err ? reject(err) : resolve())))
    res.close()
  }))
  // A buffered handler that reads the raw request body from its channel.
  iii.registerFunction('node::http::read-body', async (req) => {
    const text = (await req.request_body.readAll()).toString('utf-8')
    return { status_code: 200, body: { got: text } }
  })
  const triggers = [
    iii.registerTrigger({ type: 'http', function_id: 'node::http::streamed', config: { api_path: `${base}/out`, http_method: 'GET' } }),
    iii.registerTrigger({ type: 'http', function_id: 'node::http::read-body', config: { api_path: `${base}/in`, http_method: 'POST' } }),
  ]
  try {
    await call('engine::functions::list', {}) // the triggers are registered
    const fetchRoute = (url, init) => eventually(async () => {
      const res = await fetch(url, init)
      if (res.status === 404) {
        await res.body?.cancel()
        throw new Error(`${init?.method ?? 'GET'} ${url}: still 404 after the http trigger was registered`)
      }
      return res
    }, 3_000)

    const out = `${III_HTTP_URL}/${base}/out`
    let res = await fetchRoute(out)
    let text = await res.text()
    assert.equal(res.status, 201, `GET ${out}: status ${res.status}, body ${text}`)
    assert.equal(res.headers.get('x-stream'), 'yes', 'x-stream response header')
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/, 'response content-type')
    assert.equal(text, 'hello world', 'streamed body')

    const inURL = `${III_HTTP_URL}/${base}/in`
    res = await fetchRoute(inURL, { method: 'POST', body: 'ping from node', headers: { 'content-type': 'text/plain' } })
    text = await res.text()
    assert.equal(res.status, 200, `POST ${inURL}: status ${res.status}, body ${text}`)
    assert.deepEqual(JSON.parse(text), { got: 'ping from node' }, 'body read from request_body')
  } finally {
    for (const t of triggers) t.unregister()
  }
})

test('14. state module: state::set/get/list/list_groups/update/delete, VALUE_TOO_LARGE, a state trigger', { timeout: TEST_TIMEOUT }, async () => {
  const scope = `compat-state-${RUN}`
  const events = []
  let wake = () => {}
  iii.registerFunction('node::state::changed', async (event) => {
    events.push(event)
    wake()
    return null
  })
  const trigger = iii.registerTrigger({ type: 'state', function_id: 'node::state::changed', config: { scope, key: 'a' } })
  try {
    await eventually(async () => {
      const listed = await call('engine::registered-triggers::list', { function_id: 'node::state::changed' })
      assert.equal(listed?.registered_triggers?.length, 1, `state trigger not listed: ${JSON.stringify(listed)}`)
    })
    const key = (k) => ({ scope, key: k })
    let r = await call('state::set', { ...key('a'), value: { n: 1 } })
    assert.deepEqual(pick(r, ['old_value', 'new_value']), { old_value: null, new_value: { n: 1 } }, `set a: ${JSON.stringify(r)}`)
    r = await call('state::update', { ...key('a'), ops: [{ type: 'increment', path: 'n', by: 2 }, { type: 'set', path: 'tag', value: 'x' }] })
    assert.deepEqual(pick(r, ['old_value', 'new_value']), { old_value: { n: 1 }, new_value: { n: 3, tag: 'x' } }, `update a: ${JSON.stringify(r)}`)
    assert.deepEqual(await call('state::get', key('a')), { n: 3, tag: 'x' }, 'get a')
    // A null result is left out, as iii does: the SDK resolves undefined.
    assert.equal(await call('state::get', key('missing')), undefined, 'get of a missing key')
    await call('state::set', { ...key('b'), value: 'bee' })
    assert.deepEqual(await call('state::list', { scope }), [{ n: 3, tag: 'x' }, 'bee'], 'list')
    const groups = await call('state::list_groups', {})
    assert.ok(groups?.groups?.includes(scope), `list_groups: ${JSON.stringify(groups)}`)

    const tooLarge = await invocationError(call('state::set', { ...key('a'), value: 'x'.repeat(600 * 1024) }), 'a value over the limit')
    assert.equal(tooLarge.code, 'VALUE_TOO_LARGE', `code: ${tooLarge.code} ${tooLarge.message}`)
    assert.deepEqual(await call('state::get', key('a')), { n: 3, tag: 'x' }, 'get a after the refused write')

    r = await call('state::delete', key('a'))
    assert.deepEqual(r?.old_value, { n: 3, tag: 'x' }, `delete a: ${JSON.stringify(r)}`)
    assert.equal(await call('state::get', key('a')), undefined, 'get a after delete')
    await call('state::delete', key('b'))

    const deadline = Date.now() + 5_000
    while (events.length < 3 && Date.now() < deadline) {
      await new Promise((resolve) => {
        wake = resolve
        setTimeout(resolve, 200)
      })
    }
    const shape = events.map((e) => pick(e, ['type', 'event_type', 'scope', 'key', 'old_value', 'new_value']))
    assert.deepEqual(shape, [
      { type: 'state', event_type: 'state:created', scope, key: 'a', old_value: null, new_value: { n: 1 } },
      { type: 'state', event_type: 'state:updated', scope, key: 'a', old_value: { n: 1 }, new_value: { n: 3, tag: 'x' } },
      { type: 'state', event_type: 'state:deleted', scope, key: 'a', old_value: { n: 3, tag: 'x' }, new_value: null },
    ], `state trigger payloads: ${JSON.stringify(events)}`)
  } finally {
    trigger.unregister()
  }
})

test('15. pubsub: publish reaches a subscribe trigger with data as is, once', { timeout: TEST_TIMEOUT }, async () => {
  const topic = `compat.topic.${RUN}`
  const got = []
  let wake = () => {}
  iii.registerFunction('node::pubsub::on', async (data) => {
    got.push(data)
    wake()
    return null
  })
  const trigger = iii.registerTrigger({ type: 'subscribe', function_id: 'node::pubsub::on', config: { topic } })
  try {
    await eventually(async () => {
      const listed = await call('engine::registered-triggers::list', { function_id: 'node::pubsub::on' })
      assert.equal(listed?.registered_triggers?.length, 1, `subscribe trigger not listed: ${JSON.stringify(listed)}`)
    })
    assert.equal(await call('publish', { topic, data: { order: 1, items: ['a'] } }), undefined, 'publish result')
    await call('publish', { topic: `${topic}.other`, data: 'not for us' })
    const deadline = Date.now() + 5_000
    while (got.length < 1 && Date.now() < deadline) {
      await new Promise((resolve) => {
        wake = resolve
        setTimeout(resolve, 200)
      })
    }
    await sleep(200)
    assert.deepEqual(got, [{ order: 1, items: ['a'] }], `subscriber got ${JSON.stringify(got)}`)
    const bad = await invocationError(call('publish', { data: 1 }), 'publish without a topic')
    assert.equal(bad.code, 'invalid_argument', `code: ${bad.code}`)
  } finally {
    trigger.unregister()
  }
})

test('16. cron trigger: fires every second with iii\'s payload', { timeout: TEST_TIMEOUT }, async () => {
  const fires = []
  iii.registerFunction('node::cron::tick', async (p) => {
    fires.push(p)
    return null
  })
  const trigger = iii.registerTrigger({ type: 'cron', function_id: 'node::cron::tick', config: { expression: '* * * * * *' } })
  try {
    await eventually(async () => assert.ok(fires.length >= 2, `${fires.length} fires so far`), 6_000)
  } finally {
    trigger.unregister()
  }
  const [a, b] = fires
  assert.equal(a.trigger, 'cron', `payload ${JSON.stringify(a)}`)
  assert.equal(typeof a.job_id, 'string', `job_id: ${JSON.stringify(a)}`)
  for (const f of ['scheduled_time', 'actual_time']) {
    assert.ok(!Number.isNaN(Date.parse(a[f])), `${f} is not RFC 3339: ${JSON.stringify(a)}`)
  }
  assert.equal(Date.parse(b.scheduled_time) - Date.parse(a.scheduled_time), 1000, `consecutive fires: ${JSON.stringify(fires)}`)
  assert.ok(Date.parse(a.actual_time) >= Date.parse(a.scheduled_time), `actual before scheduled: ${JSON.stringify(a)}`)
})

test('17. queues: TriggerAction.Enqueue with a retry, fifo order per group, the dead-letter queue and redrive', { timeout: 30_000 }, async () => {
  const seen = []
  let failFirst = true
  iii.registerFunction('node::queue::job', async (p) => {
    seen.push(p)
    if (p.fail === 'always' || (p.fail === 'once' && failFirst)) {
      if (p.fail === 'once') failFirst = false
      throw new Error(`job ${p.id} fails`)
    }
    return { done: p.id }
  })
  const fifo = []
  iii.registerFunction('node::queue::post', async (p) => {
    fifo.push(`${p.account}:${p.n}`)
    return null
  })
  await call('engine::functions::list', {})

  const receipt = await call('node::queue::job', { id: 'once', fail: 'once' }, { action: TriggerAction.Enqueue({ queue: 'compat' }) })
  assert.equal(typeof receipt?.messageReceiptId, 'string', `enqueue result: ${JSON.stringify(receipt)}`)
  await eventually(() => assert.equal(seen.filter((p) => p.id === 'once').length, 2, `runs of the retried job: ${JSON.stringify(seen)}`), 5_000)

  for (let n = 0; n < 10; n++) {
    for (const account of ['a', 'b']) {
      await call('node::queue::post', { account, n }, { action: TriggerAction.Enqueue({ queue: 'compat-fifo' }) })
    }
  }
  await eventually(() => assert.equal(fifo.length, 20, `fifo jobs done: ${fifo}`), 10_000)
  for (const account of ['a', 'b']) {
    const order = fifo.filter((s) => s.startsWith(`${account}:`)).map((s) => Number(s.split(':')[1]))
    assert.deepEqual(order, [...Array(10).keys()], `account ${account} out of order: ${fifo}`)
  }

  await call('node::queue::job', { id: 'dead', fail: 'always' }, { action: TriggerAction.Enqueue({ queue: 'compat' }) })
  await eventually(() => assert.equal(seen.filter((p) => p.id === 'dead').length, 2, 'two attempts (max_retries 2)'), 5_000)
  await eventually(async () => assert.deepEqual(await call('iii::queue::redrive', { queue: 'compat' }), { queue: 'compat', redriven: 1 }), 5_000)
  await eventually(() => assert.equal(seen.filter((p) => p.id === 'dead').length, 4, 'two more attempts after the redrive'), 5_000)

  const unknown = await invocationError(call('node::queue::job', { id: 'x' }, { action: TriggerAction.Enqueue({ queue: 'no-such-queue' }) }), 'an unknown queue')
  assert.equal(unknown.code, 'enqueue_error', `code ${unknown.code}: ${unknown.message}`)
  const noGroup = await invocationError(call('node::queue::post', { n: 1 }, { action: TriggerAction.Enqueue({ queue: 'compat-fifo' }) }), 'a fifo job without its group')
  assert.equal(noGroup.code, 'enqueue_error', `code ${noGroup.code}: ${noGroup.message}`)
})

test('18. durable topics: iii::durable::publish reaches a durable:subscriber function', { timeout: TEST_TIMEOUT }, async () => {
  const topic = `compat-durable-${RUN}`
  const got = []
  iii.registerFunction('node::durable::on', async (data) => {
    got.push(data)
    return null
  })
  const trigger = iii.registerTrigger({ type: 'durable:subscriber', function_id: 'node::durable::on', config: { topic, queue_config: { max_retries: 2 } } })
  try {
    await eventually(async () => {
      const listed = await call('engine::registered-triggers::list', { function_id: 'node::durable::on' })
      assert.equal(listed?.registered_triggers?.length, 1, `trigger not listed: ${JSON.stringify(listed)}`)
    })
    for (let i = 0; i < 5; i++) await call('iii::durable::publish', { topic, data: { i } })
    await eventually(() => assert.deepEqual([...got].sort((a, b) => a.i - b.i), [0, 1, 2, 3, 4].map((i) => ({ i }))), 5_000)
  } finally {
    trigger.unregister()
  }
})

test('19. engine::functions::info returns request_format and response_format as registered; the other *::info functions', { timeout: TEST_TIMEOUT }, async () => {
  const request_format = { type: 'object', properties: { a: { type: 'number' } }, required: ['a'] }
  const response_format = { type: 'number' }
  iii.registerFunction('node::info::add', async (p) => p.a + 1, { description: 'adds one', request_format, response_format, metadata: { team: 'compat' } })
  await call('engine::functions::list', {})
  const info = await eventually(() => call('engine::functions::info', { function_id: 'node::info::add' }))
  assert.equal(info.function_id, 'node::info::add')
  assert.equal(info.description, 'adds one')
  assert.equal(info.worker_name, WORKER_NAME)
  assert.deepEqual(info.request_format, request_format, `request_format: ${JSON.stringify(info)}`)
  assert.deepEqual(info.response_format, response_format, `response_format: ${JSON.stringify(info)}`)
  assert.deepEqual(info.metadata, { team: 'compat' })
  const missing = await invocationError(call('engine::functions::info', { function_id: 'node::info::missing' }), 'info of a missing function')
  assert.equal(missing.code, 'function_not_found')
  const workers = await call('engine::workers::list', {})
  const me = workers.workers.find((w) => w.name === WORKER_NAME)
  assert.equal((await call('engine::workers::info', { worker_id: me.id })).name, WORKER_NAME)
  assert.equal((await call('engine::triggers::info', { trigger_type: 'http' })).id, 'http')
})

test('20. an HTTP-invoked function: the engine calls its URL for each invocation', { timeout: TEST_TIMEOUT }, async () => {
  const url = process.env.III_HOOK_URL
  assert.ok(url, 'III_HOOK_URL is set by ../iiinode_test.go')
  const ref = iii.registerFunction('node::ext::hook', { url: `${url}/hook`, method: 'PUT', timeout_ms: 5_000 }, { description: 'an endpoint elsewhere' })
  try {
    const r = await eventually(() => call('node::ext::hook', { order: 7 }))
    assert.deepEqual(r, { got: { order: 7 }, function: 'node::ext::hook', method: 'PUT' }, `result: ${JSON.stringify(r)}`)
    const viaGo = await call('go::call', { function_id: 'node::ext::hook', payload: 'x' })
    assert.deepEqual(viaGo, { got: 'x', function: 'node::ext::hook', method: 'PUT' }, `a Go worker's call: ${JSON.stringify(viaGo)}`)
  } finally {
    ref.unregister()
  }
})

test('21. function contracts: request_format and response_format are enforced, validate: false opts out, a schema that does not compile is refused', { timeout: TEST_TIMEOUT }, async () => {
  let ran = 0
  const request_format = { type: 'object', properties: { a: { type: 'number' } }, required: ['a'], additionalProperties: false }
  const response_format = { type: 'object', properties: { sum: { type: 'number' } }, required: ['sum'] }
  const add = async (p) => {
    ran++
    return p?.a === 0 ? { sum: 'zero' } : { sum: p.a + 1 }
  }
  iii.registerFunction('node::contract::add', add, { request_format, response_format })
  iii.registerFunction('node::contract::loose', add, { request_format, response_format, validate: false })
  // Refused at registration: a schema that does not compile, a pattern
  // whose program is too big (a{1000} x 100), a $ref cycle.
  iii.registerFunction('node::contract::broken', add, { request_format: { type: 'nope' } })
  iii.registerFunction('node::contract::regex', add, { request_format: { pattern: 'a{1000}'.repeat(100) } })
  iii.registerFunction('node::contract::cycle', add, { request_format: { $defs: { a: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' } })
  iii.registerFunction('node::contract::last', add)
  // Frames are handled in order: once the last is listed, the others were decided.
  await eventually(() => call('engine::functions::info', { function_id: 'node::contract::last' }))
  for (const id of ['node::contract::broken', 'node::contract::regex', 'node::contract::cycle']) {
    const err = await invocationError(call('engine::functions::info', { function_id: id }), id)
    assert.equal(err.code, 'function_not_found', `${id} was registered: ${err.message}`)
  }

  let err = await invocationError(call('node::contract::add', { a: 'one' }), 'an invalid payload')
  assert.equal(err.code, 'invalid_argument', err.message)
  assert.ok(err.message.includes('/a: expected number, got string'), `pointer and rule: ${err.message}`)
  err = await invocationError(call('go::call', { function_id: 'node::contract::add', payload: { a: 1, b: 2 } }), 'an invalid payload from a Go worker')
  assert.equal(err.code, 'invalid_argument', err.message)
  assert.ok(err.message.includes('/b: not allowed (additionalProperties)'), `pointer and rule: ${err.message}`)
  assert.equal(ran, 0, 'the handler ran for a refused payload')

  assert.deepEqual(await call('node::contract::add', { a: 1 }), { sum: 2 })
  err = await invocationError(call('node::contract::add', { a: 0 }), 'an invalid result')
  assert.equal(err.code, 'handler_error', err.message)
  assert.ok(err.message.includes('/sum: expected number, got string'), `rule: ${err.message}`)

  assert.deepEqual(await call('node::contract::loose', { a: 0 }), { sum: 'zero' })
  const info = await call('engine::functions::info', { function_id: 'node::contract::loose' })
  assert.deepEqual(info.request_format, request_format)
  assert.equal(info.validated, undefined, `an opted-out function is not validated: ${JSON.stringify(info)}`)
  assert.equal((await call('engine::functions::info', { function_id: 'node::contract::add' })).validated, true)
})
