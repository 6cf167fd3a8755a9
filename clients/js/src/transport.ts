// Transports: how frames travel between the client and a stream gateway.
// Both give the same thing to the connection above them: open, frames
// (with their subscriptionId), and one close that says why.

/** A frame from the gateway (docs/streams-api.md, "Browser protocol"). */
export interface Frame {
  type?: string
  seq?: number
  id?: string | null
  subscriptionId?: string
  /** Ms since the epoch: a change's commit time. */
  timestamp?: number
  event?: { type: string; data?: unknown; ids?: string[]; resync?: boolean; contractVersion?: number; event?: { type: string; data?: unknown } }
  code?: string
  message?: string
}

/** What a subscription asks for. */
export interface Join {
  subscriptionId: string
  streamName: string
  groupId: string
  id?: string
  since?: number
}

/** Why a transport went down. */
export interface Down {
  /** WebSocket close code, or HTTP status of a refused SSE request. */
  code?: number
  /** The gateway refused the credentials or the origin (401, 403). */
  refused?: boolean
  /** WebSockets do not get through, though the gateway answers HTTP. */
  blocked?: boolean
}

export interface Handlers {
  open(): void
  frame(f: Frame): void
  down(d: Down): void
}

export interface Transport {
  join(j: Join): void
  leave(subscriptionId: string): void
  /** Sends a control frame (auth, ping); false when it cannot. */
  send(f: object): boolean
  close(): void
}

export type WebSocketLike = new (url: string) => {
  readyState: number
  onopen: ((e: unknown) => void) | null
  onmessage: ((e: { data: unknown }) => void) | null
  onclose: ((e: { code: number }) => void) | null
  onerror: ((e: unknown) => void) | null
  send(data: string): void
  close(code?: number): void
}

const base = (url: string, scheme: string) => url.replace(/^(http|ws)/, scheme).replace(/\/+$/, '')
export const httpURL = (url: string) => base(url, 'http')
export const wsURL = (url: string) => base(url, 'ws')
const tokenQuery = (token?: string) => (token ? '?token=' + encodeURIComponent(token) : '')

/**
 * After a WebSocket failed before opening, one plain GET of the same URL
 * tells a refusal (401, 403) from a socket that does not get through (the
 * gateway answers 400, "expected a WebSocket upgrade") and from a gateway
 * that is down (no answer, or 503).
 */
async function probe(url: string, token?: string): Promise<Down> {
  try {
    const res = await fetch(httpURL(url) + '/' + tokenQuery(token), { credentials: 'include' })
    res.body?.cancel()
    return { code: res.status, refused: res.status === 401 || res.status === 403, blocked: res.status === 400 }
  } catch {
    return {}
  }
}

/** A transport's join and leave frames, over its send. */
const framed = (send: (f: object) => boolean, close: () => void): Transport => ({
  join: (j) => send({ type: 'join', data: j }),
  // The gateway needs only the id; the names are required fields.
  leave: (id) => send({ type: 'leave', data: { subscriptionId: id, streamName: '', groupId: '' } }),
  send,
  close,
})

/** The multiplexed WebSocket: GET / with join and leave frames. */
export function openWebSocket(url: string, token: string | undefined, WS: WebSocketLike, h: Handlers): Transport {
  const ws = new WS(wsURL(url) + '/' + tokenQuery(token))
  let opened = false
  let done = false
  const send = (f: object) => {
    if (ws.readyState !== 1) return false
    ws.send(JSON.stringify(f))
    return true
  }
  ws.onopen = () => {
    opened = true
    if (!done) h.open()
  }
  ws.onmessage = (m) => {
    if (done || typeof m.data !== 'string') return
    let f: Frame
    try {
      f = JSON.parse(m.data)
    } catch {
      return
    }
    h.frame(f)
  }
  // Some implementations (Node 20's) fire only error when the handshake fails.
  ws.onclose = ws.onerror = (e: any) => {
    if (done || (opened && e.code === undefined)) return
    done = true
    if (opened) h.down({ code: e.code })
    else probe(url, token).then(h.down)
  }
  return framed(send, () => {
    done = true
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null
    try {
      ws.close()
    } catch {}
  })
}

/**
 * Server-Sent Events: one GET / (Accept: text/event-stream) carries every
 * subscription, read with fetch (which, unlike EventSource, shows the
 * status of a refusal and the gateway's keep-alive comments), so a page
 * holds one of the browser's few connections per host whatever its
 * groups. It is open once the gateway answered 200 with the stream's
 * Trine-Session. Frames to the gateway (join, leave, auth, ping) go by
 * POST /stream/session with that session, one POST at a time, the frames
 * queued meanwhile together; their answers come on the stream. An idle
 * stream gets a keep-alive comment every few seconds
 * (--stream-sse-keepalive), so a silent one is dead.
 */
export function openSSE(url: string, token: string | undefined, h: Handlers): Transport {
  const a = new AbortController()
  let session: string | null = null
  let q: object[] = []
  let busy = false
  let done = false
  const down = (d: Down) => {
    if (done) return
    done = true
    a.abort()
    h.down(d)
  }
  const post = async () => {
    if (busy || done || !session || !q.length) return
    busy = true
    const frames = q
    q = []
    try {
      const r = await fetch(httpURL(url) + '/stream/session', { method: 'POST', body: JSON.stringify({ session, frames }), credentials: 'include', signal: a.signal })
      r.body?.cancel()
      if (r.status === 429) {
        q = frames.concat(q) // over --stream-session-posts: again in a second
        await new Promise((ok) => setTimeout(ok, 1e3))
      } else if (!r.ok) return down({}) // the session ended
    } catch {
      return down({})
    } finally {
      busy = false
    }
    post()
  }
  const read = async () => {
    const res = await fetch(httpURL(url) + '/' + tokenQuery(token), { headers: { accept: 'text/event-stream' }, credentials: 'include', signal: a.signal })
    session = res.headers.get('trine-session')
    if (!res.ok || !res.body || !session) return down({ code: res.status, refused: res.status === 401 || res.status === 403 })
    h.open()
    post()
    const rd = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ''
    let data = ''
    for (;;) {
      const { value, done: end } = await rd.read()
      if (end || done) return
      h.frame({ type: 'pong' }) // any byte, the keep-alive comment included, shows the stream alive
      buf += value
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, '')
        buf = buf.slice(i + 1)
        if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(line[5] === ' ' ? 6 : 5)
        else if (!line && data) {
          let f: Frame | undefined
          try {
            f = JSON.parse(data)
          } catch {}
          data = ''
          if (f) h.frame(f)
          if (done) return
        }
      }
    }
  }
  read().then(
    () => down({}),
    () => down({}),
  )
  const send = (f: object) => {
    if (done) return false
    q.push(f)
    post()
    return true
  }
  return framed(send, () => {
    done = true
    a.abort()
  })
}
