// Calls over iii's worker protocol, to a listener that exposes functions to
// browsers: invokefunction with an invocation_id, answered by an
// invocationresult with the same id.
import type { WebSocketLike } from './transport.js'

/** ClientError is what the client rejects and reports with; code is stable snake_case. */
export class ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

type Pending = [(v: unknown) => void, (e: Error) => void, ReturnType<typeof setTimeout>]

/**
 * caller opens one socket to url on the first call and keeps it. A call in
 * flight when it closes is rejected with connection_lost, never sent twice
 * (the function may have run); the next call opens a new socket.
 */
export function caller(url: string, WS: WebSocketLike) {
  let ws: InstanceType<WebSocketLike> | undefined
  let queue: string[] = []
  let n = 0
  const pending = new Map<string, Pending>()
  const prefix = Math.random().toString(36).slice(2)
  const fail = (code: string, msg: string) => {
    for (const [, rej, t] of pending.values()) {
      clearTimeout(t)
      rej(new ClientError(code, msg))
    }
    pending.clear()
    queue = []
    ws = undefined
  }
  const open = () => {
    const s = (ws = new WS(url))
    s.onopen = () => {
      // What iii's SDKs send first: who this connection is (no reply).
      s.send(
        JSON.stringify({
          type: 'invokefunction',
          function_id: 'engine::workers::register',
          data: { runtime: 'browser', name: '@trine/client' },
          action: { type: 'void' },
        }),
      )
      for (const m of queue) s.send(m)
      queue = []
    }
    s.onmessage = (m) => {
      let f
      try {
        f = JSON.parse(m.data as string)
      } catch {
        return
      }
      const p = f.type === 'invocationresult' && pending.get(f.invocation_id)
      if (!p) return
      pending.delete(f.invocation_id)
      clearTimeout(p[2])
      if (f.error) p[1](new ClientError(f.error.code || 'error', f.error.message || ''))
      else p[0](f.result)
    }
    s.onclose = () => ws === s && fail('connection_lost', 'the call socket closed before the answer came')
  }
  return {
    call(functionId: string, payload: unknown, timeout: number): Promise<unknown> {
      return new Promise((res, rej) => {
        const id = prefix + ++n
        const msg = JSON.stringify({ type: 'invokefunction', invocation_id: id, function_id: functionId, data: payload })
        pending.set(id, [
          res,
          rej,
          setTimeout(() => {
            pending.delete(id)
            rej(new ClientError('timeout', 'no answer from ' + functionId + ' within ' + timeout + ' ms'))
          }, timeout),
        ])
        if (!ws) open()
        if (ws!.readyState === 1) ws!.send(msg)
        else queue.push(msg)
      })
    },
    close() {
      const s = ws
      fail('closed', 'the client was closed')
      s?.close()
    },
  }
}
