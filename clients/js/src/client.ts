// The connection: a state machine over one transport, with reconnect,
// resume, token refresh and dead-connection detection; it owns the live
// groups and items.
import { ClientError, caller } from './call.js'
import { Live, type Change, type EventMeta, type Overlay } from './live.js'
import { takePresence, type Presence, type PresenceOption } from './presence.js'
import { after, every } from './timers.js'
import { openSSE, openWebSocket, type Down, type Frame, type Join, type Transport, type WebSocketLike } from './transport.js'

/**
 * The connection's state.
 * - connecting: opening a connection (the first, or after offline);
 * - live: connected, every group has its state;
 * - resyncing: connected, some group waits for a snapshot (its first, or
 *   one replacing a state it could not resume);
 * - offline: disconnected, the next attempt is scheduled (backoff);
 * - closed: close() was called, or the gateway refused the credentials.
 */
export type State = 'connecting' | 'live' | 'resyncing' | 'offline' | 'closed'

export interface Options {
  /** A token (JWT) sent when connecting (the token query parameter). */
  token?: string
  /**
   * Returns a fresh token: called before connecting when there is none or
   * it expires within 5 s, before the current one's exp (it is then sent
   * in an auth frame), after a 4001 close, and once after a refusal.
   * Concurrent needs share one call.
   */
  getToken?: () => string | Promise<string>
  /** auto (default): WebSocket, and SSE when WebSockets do not get through. */
  transport?: 'auto' | 'websocket' | 'sse'
  /** The iii listener client.call uses (ws:// or wss://). */
  callUrl?: string
  /** A WebSocket implementation; default globalThis.WebSocket. */
  WebSocket?: WebSocketLike
  /** Reconnect delays in ms: full jitter over min·2^attempt, capped at max. Default 500 and 30000. */
  backoff?: { min?: number; max?: number }
  /**
   * Ms of silence after which the client pings; silence for twice as
   * long closes the connection as dead. Checked every second, by a
   * Worker's timer in browsers, which hidden tabs do not throttle.
   * Default 4000, so a dead connection is found within 9 s.
   */
  pingInterval?: number
  /** Default timeout of client.call in ms. Default 30000. */
  callTimeout?: number
  /**
   * Share one socket among the tabs of this origin that connect to the same
   * url: the tab holding a Web Lock holds the socket and passes frames on
   * over a BroadcastChannel; when it closes, another tab takes the lock
   * and the socket, and every group resumes. Browsers only (with
   * BroadcastChannel and navigator.locks); elsewhere it is ignored.
   */
  shareAcrossTabs?: boolean
  /**
   * Ms a group or item stays subscribed after its last handle closed, so
   * that one taken again at once (React StrictMode's second mount) does
   * not leave and join again. Default 1000.
   */
  linger?: number
  /**
   * Report how long changes take from their commit to this page: at most
   * once a second, the time from a change's commit (its time) to the next
   * animation frame after its callbacks returned goes to the gateway,
   * which exports it (trine_stream_client_latency_seconds). Only changes
   * committed after their subscription joined, on a visible page. Default
   * true; false sends none.
   */
  reportLatency?: boolean
}

/** Options of client.call. */
export interface CallOptions {
  /** Ms to wait for the answer; default the client's callTimeout. */
  timeout?: number
  /** A write to show at once, pending, in the live groups and items it touches. */
  optimistic?: { stream: string; group: string; id: string; data: unknown }
}

/** Options of client.group. */
export interface GroupOptions {
  /**
   * true, or {meta} (any JSON object up to --presence-max-meta-bytes, 1 KiB):
   * the connection is a member of the group, and group.presence shows
   * the members. Needs a WebSocket (not SSE).
   */
  presence?: PresenceOption
}

/** A live group: every item of (stream, group). */
export interface Group<T, M = unknown> {
  readonly stream: string
  readonly group: string
  /** The items by id, updated in place. */
  readonly items: Map<string, T>
  /** The sequence number of the state shown; undefined before the first snapshot. */
  readonly seq: number | undefined
  /** True once the join was refused. */
  readonly denied: boolean
  /** The members, when a handle was taken with {presence}. */
  readonly presence?: Presence<M>
  /** The version of the stream's contract (stream::define); undefined while unknown or for none. */
  readonly contractVersion: number | undefined
  subscribe(cb: (state: Map<string, T>, change: Change<T>) => void): () => void
  on(type: string, cb: (data: any, meta: EventMeta) => void): () => void
  /** Calls cb(version) when a new contract version is defined for the stream. */
  onSchema(cb: (version: number) => void): () => void
  close(): void
}

/** A live item: one item of a group. */
export interface Item<T> {
  readonly stream: string
  readonly group: string
  readonly item: string
  readonly value: T | undefined
  readonly seq: number | undefined
  readonly denied: boolean
  readonly contractVersion: number | undefined
  subscribe(cb: (state: T | undefined, change: Change<T>) => void): () => void
  on(type: string, cb: (data: any, meta: EventMeta) => void): () => void
  onSchema(cb: (version: number) => void): () => void
  close(): void
}

type Listener = (...a: any[]) => void

/** Ms until the JWT's exp; Infinity when it has none or is not a JWT. */
function expiresIn(t: string): number {
  try {
    const exp = JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp
    if (typeof exp === 'number') return exp * 1000 - Date.now()
  } catch {}
  return Infinity
}

const key = (l: Live<any>) => JSON.stringify([l.stream, l.group, l.item])

/** One stream's types, as `trine codegen ts` writes them in its Streams map. */
export interface StreamTypes {
  item: unknown
  events: Record<string, unknown>
  group: string
}

/** One function's types, as `trine codegen ts` writes them in its Functions map. */
export interface FunctionTypes {
  request: unknown
  response: unknown
}

/**
 * A Client whose group and item take their types from a Streams map
 * (`trine codegen ts`): group('todos', id) is a Group of todos' item type,
 * id must match the stream's group id pattern, and on(type, cb) gives
 * each event type's data.
 */
export type TypedClient<S extends Record<string, StreamTypes>, F extends Record<string, FunctionTypes> = Record<string, FunctionTypes>> = Omit<Client, 'group' | 'item' | 'call'> & {
  call<K extends keyof F & string>(functionId: K, payload: F[K]['request'], opts?: CallOptions): Promise<F[K]['response']>
  group<K extends keyof S & string, M = unknown>(stream: K, group: S[K]['group'], opts?: GroupOptions): TypedGroup<S[K], M>
  item<K extends keyof S & string>(stream: K, group: S[K]['group'], id: string): Omit<Item<S[K]['item']>, 'on'> & TypedOn<S[K]>
}

/** A Group whose events are typed by their type. */
export type TypedGroup<S extends StreamTypes, M = unknown> = Omit<Group<S['item'], M>, 'on'> & TypedOn<S>

export interface TypedOn<S extends StreamTypes> {
  on<E extends keyof S['events'] & string>(type: E, cb: (data: S['events'][E], meta: EventMeta) => void): () => void
}

/**
 * connect opens a client on the stream gateway at url (http(s):// or
 * ws(s)://). connect<Streams>(url), with the map `trine codegen ts`
 * writes, types every group and item by its stream.
 */
export function connect(url: string, opts?: Options): Client
export function connect<S extends Record<string, StreamTypes>, F extends Record<string, FunctionTypes> = Record<string, FunctionTypes>>(url: string, opts?: Options): TypedClient<S, F>
export function connect(url: string, opts: Options = {}): Client {
  return new Client(url, opts)
}

export class Client {
  /** The connection's state; on('state', cb) reports changes. */
  state: State = 'connecting'
  /** Why the client closed itself (a refusal), if it did. */
  error?: ClientError
  /** The transport in use; auto switches to sse when WebSockets do not get through. */
  transport: 'websocket' | 'sse'
  private token?: string
  private t?: Transport
  private up = false
  private lives = new Map<string, Live<any>>()
  /** Lives made in this task, whose first join is yet to go. */
  private unsent = new Set<Live<any>>()
  private bySub = new Map<string, Live<any>>()
  private n = 0
  private sampled = 0
  private attempt = 0
  private authRetried = false
  private lastRx = 0
  private pinged = false
  private retryTimer?: ReturnType<typeof setTimeout>
  private unping?: () => void
  private renewTimer?: ReturnType<typeof setTimeout>
  private refreshing?: Promise<string>
  private listeners = new Map<string, Set<Listener>>()
  private calls?: ReturnType<typeof caller>
  private WS: WebSocketLike
  private online = () => this.state === 'offline' && !this.paused && this.retry(0)
  // shareAcrossTabs: the channel between tabs; leader holds the socket
  private bc?: BroadcastChannel
  private leader = false
  private paused = false
  private id = Math.random()
  private unlock?: (v?: unknown) => void
  /** Leader: how many joins other tabs hold, by key. */
  private remote = new Map<string, number>()
  /** Leader: each other tab's joins (a key per join) and when it was last heard. */
  private tabs = new Map<number, { at: number; keys: string[] }>()
  private unbeat?: () => void

  constructor(
    readonly url: string,
    private o: Options,
  ) {
    this.WS = o.WebSocket || (globalThis as any).WebSocket
    this.transport = o.transport === 'sse' || (!this.WS && o.transport !== 'websocket') ? 'sse' : 'websocket'
    this.token = o.token
    if (o.token && o.getToken) this.schedule(o.token)
    const g = globalThis as any
    g.addEventListener?.('online', this.online)
    if (o.shareAcrossTabs && g.BroadcastChannel && g.navigator?.locks) {
      // A page leaving lets the socket and the lock go; one restored from
      // the back/forward cache takes part again, its groups resuming with since.
      g.addEventListener?.('pagehide', () => this.pause())
      g.addEventListener?.('pageshow', (e: any) => e.persisted && this.paused && this.state !== 'closed' && this.share())
      this.share()
    } else this.connect()
  }

  /**
   * shareAcrossTabs: one tab, the one holding the lock, holds the socket;
   * the others send it their joins and apply the frames it passes on.
   */
  private share() {
    this.paused = false
    this.set('connecting')
    const name = 'trine-client ' + this.url
    const bc = (this.bc = new BroadcastChannel(name))
    bc.onmessage = (m) => this.tab(m.data)
    // Every tab beats each second; the holder drops the joins of a tab
    // silent for 5 s (one that crashed, and never said leave).
    this.unbeat = every(1e3, () => {
      if (!this.leader) return bc.postMessage({ t: 'beat', id: this.id })
      for (const [id, tab] of this.tabs) if (Date.now() - tab.at > 5e3) this.drop(id)
    })
    for (const l of this.lives.values()) this.join(l)
    ;(globalThis as any).navigator.locks.request(name, () => {
      if (this.state === 'closed' || this.bc !== bc) return
      this.leader = true
      for (const l of this.lives.values()) l.sub = undefined
      bc.postMessage({ t: 'hello' })
      this.connect()
      return new Promise((r) => (this.unlock = r))
    })
  }

  /** shareAcrossTabs: the page is hidden for good or cached; its tab lets everything go. */
  private pause() {
    if (this.state === 'closed' || this.paused) return
    clearTimeout(this.retryTimer)
    this.stop()
    this.unbeat?.()
    if (this.leader)
      // The groups held for other tabs go; theirs resume with the next holder.
      for (const [k, n] of this.remote) {
        const l = this.lives.get(k)
        if (l && (l.refs -= n) <= 0) this.lives.delete(k)
      }
    else for (const l of this.lives.values()) this.leave(l)
    this.remote.clear()
    this.tabs.clear()
    this.leader = false
    this.unlock?.()
    this.bc!.close()
    this.paused = true
    this.set('offline')
  }

  /** Listens to 'state' (cb(state)) or 'error' (cb(ClientError)). */
  on(event: 'state' | 'error', cb: Listener): () => void {
    let s = this.listeners.get(event)
    if (!s) this.listeners.set(event, (s = new Set()))
    s.add(cb)
    return () => s.delete(cb)
  }

  /**
   * The live group (stream, group); handles are shared and counted: close
   * each one. With {presence}, the connection is a member of the group
   * and group.presence shows the members.
   */
  group<T = unknown, M = unknown>(stream: string, group: string, opts: { presence: true | { meta?: M } }): Group<T, M> & { readonly presence: Presence<M> }
  group<T = unknown, M = unknown>(stream: string, group: string, opts?: GroupOptions): Group<T, M>
  group<T = unknown, M = unknown>(stream: string, group: string, opts: GroupOptions = {}): Group<T, M> {
    return this.live<T>(stream, group, undefined, opts.presence)
  }

  /** The live item id of (stream, group). */
  item<T = unknown>(stream: string, group: string, id: string): Item<T> {
    return this.live<T>(stream, group, id) as Item<T>
  }

  /**
   * Calls a function through the iii listener at callUrl; rejects with a
   * ClientError. With optimistic, data shows at once as item id of the
   * live group (and item) as a pending change, until the change with the
   * seq of the function's result ({seq}, as stream::set answers) arrives;
   * if the call fails it is rolled back.
   */
  call<R = unknown>(functionId: string, payload?: unknown, opts: CallOptions = {}): Promise<R> {
    if (!this.o.callUrl) return Promise.reject(new ClientError('no_call_url', 'connect(url, {callUrl}) names the listener calls go to'))
    if (this.state === 'closed') return Promise.reject(new ClientError('closed', 'the client was closed'))
    this.calls ||= caller(this.o.callUrl, this.WS)
    const p = opts.optimistic
    const shown: [Live<any>, Overlay<any>][] = []
    if (p)
      for (const l of this.lives.values()) {
        const o = l.stream === p.stream && l.group === p.group && l.pend(p.id, p.data)
        if (o) shown.push([l, o])
      }
    return this.calls.call(functionId, payload ?? null, opts.timeout || this.o.callTimeout || 3e4).then(
      (r: any) => {
        for (const [l, o] of shown) l.end(p!.id, o, true, r?.seq)
        return r
      },
      (e) => {
        for (const [l, o] of shown) l.end(p!.id, o, false)
        throw e
      },
    )
  }

  /** Closes the connection for good. */
  close(): void {
    if (this.state === 'closed') return
    clearTimeout(this.retryTimer)
    clearTimeout(this.renewTimer)
    this.stop()
    this.unbeat?.()
    this.calls?.close()
    ;(globalThis as any).removeEventListener?.('online', this.online)
    if (this.bc && !this.leader && !this.paused) for (const l of this.lives.values()) this.leave(l)
    this.unlock?.()
    this.set('closed')
    this.bc?.close()
  }

  /** Leader: the tab id went silent; its joins end. */
  private drop(id: number) {
    for (const k of [...this.tabs.get(id)!.keys]) this.tab({ t: 'leave', k, id })
    this.tabs.delete(id)
  }

  /** A message from another tab of this url (shareAcrossTabs). */
  private tab(m: { t: string; k?: string; f?: Frame; s?: State; id?: number; to?: number; p?: PresenceOption }) {
    const l = m.k !== undefined ? this.lives.get(m.k) : undefined
    if (this.leader) {
      let tab = this.tabs.get(m.id!)
      if (m.id !== undefined && !tab && m.t !== 'leave') this.tabs.set(m.id, (tab = { at: 0, keys: [] }))
      if (tab) tab.at = Date.now()
      if (m.t === 'join') {
        tab!.keys.push(m.k!)
        const [stream, group, i] = JSON.parse(m.k!)
        const item = i ?? undefined // JSON has null for a group's item
        const n = this.live(stream, group, item, m.p)
        this.remote.set(m.k!, (this.remote.get(m.k!) || 0) + 1)
        if (n.seq !== undefined)
          this.bc!.postMessage({ t: 'frame', k: m.k, to: m.id, f: { seq: n.seq, id: item ?? null, event: { type: 'sync', data: item === undefined ? [...n.items.values()] : n.value ?? null, ids: item === undefined ? [...n.items.keys()] : undefined, contractVersion: n.contractVersion } } })
        if (n.presence?.count !== undefined) this.bc!.postMessage({ t: 'frame', k: m.k, to: m.id, f: { type: 'presence', event: n.presence.state() } })
        this.bc!.postMessage({ t: 'state', s: this.state })
      } else if (m.t === 'leave' && l && this.remote.get(m.k!)) {
        const i = tab ? tab.keys.indexOf(m.k!) : -1
        if (i >= 0) tab!.keys.splice(i, 1)
        this.remote.set(m.k!, this.remote.get(m.k!)! - 1)
        l.close()
      }
      return
    }
    if (m.t === 'frame') {
      // A state sent for another tab's join is not news here.
      if (m.to === undefined || m.to === this.id) this.deliver(l, m.f!)
    } else if (m.t === 'state') this.set(m.s!)
    else if (m.t === 'hello') for (const l of this.lives.values()) this.join(l) // a new leader
  }

  private live<T>(stream: string, group: string, item?: string, p?: PresenceOption): Live<T> {
    const k = JSON.stringify([stream, group, item])
    let l = this.lives.get(k)
    if (l) {
      l.refs++
      if (takePresence(this, l, p) && !this.unsent.has(l)) this.rejoin(l)
      return l
    }
    const n = (l = new Live<T>(this, stream, group, item))
    this.lives.set(k, n)
    takePresence(this, n, p)
    // The join goes at the end of this task, so that the handles taken
    // meanwhile (a component's useGroup and usePresence) make one join.
    this.unsent.add(n)
    queueMicrotask(() => {
      this.unsent.delete(n)
      if (!n.sub && this.lives.get(k) === n && this.state !== 'closed') this.join(n)
    })
    this.settle()
    return l
  }

  private emit(event: string, v: unknown) {
    for (const cb of this.listeners.get(event) || []) cb(v)
  }

  private set(s: State) {
    if (this.state === s) return
    this.emit('state', (this.state = s))
    if (this.leader && s !== 'closed') this.bc!.postMessage({ t: 'state', s })
  }

  private async connect() {
    clearTimeout(this.retryTimer)
    this.set('connecting')
    let token = this.token
    if (this.o.getToken && (!token || expiresIn(token) < 5e3)) {
      try {
        token = await this.refresh()
      } catch (e) {
        this.emit('error', new ClientError('token_failed', 'getToken failed: ' + e))
        return this.retry()
      }
    }
    if (this.state !== 'connecting') return // closed meanwhile
    const h = { open: () => this.opened(), frame: (f: Frame) => this.frame(f), down: (d: Down) => this.down(d) }
    this.t = this.transport === 'sse' ? openSSE(this.url, token, h) : openWebSocket(this.url, token, this.WS, h)
    // A connection that does not open within 10 s (a blackholed network) is given up.
    this.retryTimer = setTimeout(() => this.up || this.down({}), 1e4)
  }

  private opened() {
    clearTimeout(this.retryTimer)
    this.up = true
    this.authRetried = false
    this.lastRx = Date.now()
    this.pinged = false
    // In a Worker: a hidden tab's own timers may wake once a minute.
    this.unping = every(Math.min(1e3, (this.o.pingInterval || 4e3) / 4), () => this.tick())
    for (const l of this.lives.values()) this.join(l)
    this.settle()
  }

  private join(l: Live<any>) {
    const presence = l.presence?.want
    if (this.bc && !this.leader) return l.denied || this.paused || this.bc.postMessage({ t: 'join', k: key(l), id: this.id, p: presence })
    if (!this.up || l.denied) return
    const id = 's' + ++this.n
    l.sub = id
    l.at = Date.now()
    this.bySub.set(id, l)
    this.t!.join({ subscriptionId: id, streamName: l.stream, groupId: l.group, id: l.item, since: l.seq, presence } as Join)
  }

  /** A stream or presence frame for l. */
  private deliver(l: Live<any> | undefined, f: Frame) {
    if (f.type === 'presence') l?.presence?.apply(f.event)
    else l?.apply(f)
  }

  private leave(l: Live<any>) {
    if (this.bc && !this.leader) this.paused || this.bc.postMessage({ t: 'leave', k: key(l), id: this.id })
    else if (l.sub) {
      this.bySub.delete(l.sub)
      this.t?.leave(l.sub)
      l.sub = undefined
    }
  }

  private frame(f: Frame) {
    this.lastRx = Date.now()
    this.pinged = false
    const l = f.subscriptionId !== undefined ? this.bySub.get(f.subscriptionId) : undefined
    if (f.type === 'stream' || f.type === 'presence') {
      if (!l) return
      if (f.type === 'presence') this.deliver(l, f)
      else if (!l.apply(f)) return this.failed(l, 'bad_frame', 'a malformed stream frame was dropped')
      // Only the gateway serving a group ends the backoff.
      else {
        this.attempt = l.tries = 0
        this.sample(l, f)
      }
      const k = key(l)
      if (this.remote.get(k)) this.bc!.postMessage({ t: 'frame', k, f })
      return
    }
    if (f.type !== 'error') return
    if (l && (f.code === 'unavailable' || f.code === 'snapshot_failed')) return this.failed(l, f.code, f.message)
    if (l) this.leave(l)
    const e = new ClientError(f.code || 'error', f.message || '')
    // Presence refused (its meta, a limit): the group goes on without it.
    if (l?.presence?.want && f.code?.startsWith('presence_')) {
      l.presence.fail(e, true)
      this.join(l)
    }
    this.emit('error', e)
  }

  /**
   * Reports f's commit-to-render time, once its callbacks have run, at
   * the next animation frame (see Options.reportLatency): changes and
   * events only, not snapshots or refusals.
   */
  private sample(l: Live<any>, f: Frame) {
    const g = globalThis as any
    const t = f.timestamp!
    const now = Date.now()
    if (this.o.reportLatency === false || !(t >= l.at) || !/^(create|update|delete|event)$/.test(f.event!.type) || now - this.sampled < 1e3 || g.document?.hidden) return
    this.sampled = now
    const sub = l.sub
    const send = () => {
      const ms = Date.now() - t
      if (ms >= 0 && ms <= 6e4 && sub === l.sub) this.t?.send({ type: 'latency', data: { subscriptionId: sub, ms } })
    }
    g.requestAnimationFrame ? g.requestAnimationFrame(send) : send()
  }

  /**
   * l's subscription failed (the gateway could not serve it now, or sent
   * a malformed frame): it joins again, with since, after its own backoff.
   */
  private failed(l: Live<any>, code: string, msg = '') {
    this.leave(l)
    after(this.delay(l.tries++), () => this.state !== 'closed' && l.refs && !l.sub && this.join(l))
    this.emit('error', new ClientError(code, msg))
  }

  /**
   * Silence: ping, and past twice the interval, the connection is dead.
   * An SSE stream also gets the gateway's keep-alive comment every
   * --stream-sse-keepalive (3 s).
   */
  private tick() {
    const pi = this.o.pingInterval || 4e3
    const idle = Date.now() - this.lastRx
    if (idle > 2 * pi) {
      this.stop()
      this.down({})
    } else if (idle > pi && !this.pinged) this.pinged = !!this.t?.send({ type: 'ping' })
  }

  private stop() {
    this.unping?.()
    this.unping = undefined
    this.t?.close()
    this.t = undefined
    this.up = false
  }

  private down(d: Down) {
    this.stop()
    for (const l of this.lives.values()) l.sub = undefined
    this.bySub.clear()
    if (this.state === 'closed') return
    if (d.refused) {
      if (this.o.getToken && !this.authRetried) {
        this.authRetried = true
        this.token = undefined
        return this.connect()
      }
      this.error = new ClientError('unauthorized', 'the gateway refused the connection (HTTP ' + d.code + ')')
      this.close()
      return this.emit('error', this.error)
    }
    if (d.blocked && this.o.transport !== 'websocket') {
      this.transport = 'sse'
      return this.connect()
    }
    if (d.code === 4001) this.token = undefined // expired: connect with a fresh one
    this.retry()
  }

  /** Full jitter over min·2^n, capped at max; n defaults to the connection's attempts. */
  private delay(n = this.attempt++) {
    const b = this.o.backoff || {}
    return Math.random() * Math.min(b.max || 3e4, (b.min || 500) * 2 ** n)
  }

  private retry(ms = this.delay()) {
    clearTimeout(this.retryTimer)
    this.set('offline')
    this.retryTimer = setTimeout(() => this.connect(), ms)
  }

  private refresh(): Promise<string> {
    return (this.refreshing ||= (async () => {
      try {
        const t = await this.o.getToken!()
        this.token = t
        this.schedule(t)
        return t
      } finally {
        this.refreshing = undefined
      }
    })())
  }

  /**
   * Renews t before its exp: at 80% of what is left, at most a minute
   * early. A token with 5 s or less left is renewed at the next connect.
   */
  private schedule(t: string) {
    clearTimeout(this.renewTimer)
    const left = expiresIn(t)
    if (left > 5e3 && left < Infinity && this.state !== 'closed')
      this.renewTimer = setTimeout(async () => {
        try {
          const t = await this.refresh()
          this.t?.send({ type: 'auth', data: { token: t } })
        } catch (e) {
          if (this.state !== 'closed') this.emit('error', new ClientError('token_failed', 'getToken failed: ' + e))
        }
      }, Math.min(Math.max(left * 0.8, left - 6e4), 2 ** 31 - 1))
  }

  /** @internal The state follows the groups: resyncing while one waits for a snapshot. */
  settle() {
    if (this.up) this.set([...this.lives.values()].some((l) => !l.denied && l.seq === undefined) ? 'resyncing' : 'live')
  }

  /** @internal A group missed a sequence number (or changed its presence meta): resume it from its seq. */
  rejoin(l: Live<any>) {
    this.leave(l)
    this.join(l)
  }

  /**
   * @internal The last handle of l closed: the subscription ends after
   * linger ms unless a handle is taken again meanwhile (React StrictMode
   * mounts, unmounts and mounts again at once).
   */
  release(l: Live<any>) {
    const k = key(l)
    after(this.o.linger ?? 1e3, () => {
      if (l.refs || this.lives.get(k) !== l) return
      this.leave(l)
      this.lives.delete(k)
      this.settle()
    })
  }

  /** @internal l's join was refused: it is not renewed. */
  denied(l: Live<any>) {
    this.leave(l)
    this.settle()
    this.emit('error', new ClientError('unauthorized', 'joining ' + l.stream + '/' + l.group + ' was refused'))
  }
}
