// What the tests share. They run under compat/jsclient_test.go, which
// starts a real engine and a real `trine gateway` and sets:
//   TRINE_GATEWAY        ws://… the gateway (no auth; tests kill and restart it)
//   TRINE_ENGINE_STREAM  ws://… the engine's stream listener (JWTs signed with TRINE_JWT_SECRET)
//   TRINE_III            ws://… the engine's iii listener (trusted: stream::* callable)
//   TRINE_CONTROL        http://… the harness: /gateway/{kill,start,restart,stats}, /proxy, /proxy/freeze
import { createHmac, randomBytes } from 'node:crypto'
import { connect } from '../dist/index.js'

export const { TRINE_GATEWAY: GATEWAY, TRINE_ENGINE_STREAM: ENGINE_STREAM, TRINE_III: III, TRINE_CONTROL: CONTROL, TRINE_JWT_SECRET: SECRET } =
  process.env
if (!GATEWAY || !ENGINE_STREAM || !III || !CONTROL || !SECRET) {
  console.error('clients/js tests run from compat/jsclient_test.go (go test ./compat -run TestJSClient)')
  process.exit(2)
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Polls fn until it returns a truthy value, or fails after ms. */
export async function waitFor(fn, what, ms = 15000) {
  const deadline = Date.now() + ms
  for (;;) {
    const v = fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
    await sleep(10)
  }
}

/** A group name no other test uses. */
export const uniq = (prefix) => prefix + '-' + randomBytes(4).toString('hex')

/** Asks the harness to do something (kill the gateway, …); returns its JSON answer, if any. */
export async function control(path) {
  const res = await fetch(CONTROL + path, { method: 'POST' })
  const body = await res.text()
  if (!res.ok) throw new Error(path + ': ' + res.status + ' ' + body)
  return body ? JSON.parse(body) : undefined
}

/** A client used for its calls only (writes through the iii listener). */
export function writer(t) {
  const c = connect(GATEWAY, { callUrl: III })
  t.after(() => c.close())
  return c
}

/** A client on url, closed when the test ends. */
export function client(t, url, opts) {
  const c = connect(url, opts)
  t.after(() => c.close())
  return c
}

/** An HS256 JWT with claims, signed with the engine's secret (or another). */
export function sign(claims, secret = SECRET) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const body = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims)
  return body + '.' + createHmac('sha256', secret).update(body).digest('base64url')
}

export const now = () => Math.floor(Date.now() / 1000)

/** Asserts that changes (after a snapshot at from) run from+1 … to, one each. */
export function contiguous(changes, from, to) {
  const seqs = changes.map((c) => c.seq)
  const want = Array.from({ length: to - from }, (_, i) => from + 1 + i)
  if (JSON.stringify(seqs) !== JSON.stringify(want)) {
    const dup = seqs.filter((s, i) => seqs.indexOf(s) !== i)
    const missing = want.filter((s) => !seqs.includes(s))
    throw new Error(`sequence ${from + 1}..${to}: duplicates ${dup.slice(0, 10)}, missing ${missing.slice(0, 10)} (of ${seqs.length})`)
  }
}
