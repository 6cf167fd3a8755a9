// Live groups and items: the materialized state of a subscription, kept in
// sequence order from its snapshot and events.
import type { Presence } from './presence.js'
import type { Frame } from './transport.js'

/** The change that made the state a subscriber is given. */
export type Change<T> =
  /** A snapshot replaced the state: the first one (or one after the client dropped its state). */
  | { type: 'snapshot'; seq: number }
  /**
   * The gateway could not replay what was missed (its history no longer
   * reached back), so a fresh snapshot replaced the state at seq: changes
   * between the last seq shown and this one were not seen one by one, and
   * stream::send events among them were missed. A snapshot whose seq is
   * below the one shown (a store that lost its history, as a restarted
   * in-memory engine) is a resync too: sequences restart from seq, and
   * the changes after it are new ones.
   */
  | { type: 'resync'; seq: number }
  /**
   * An item changed. pending: true is a local optimistic write not yet
   * confirmed; pending: false is the end of one (confirmed, or rolled
   * back), showing the server's value again. Server changes have no pending.
   * time is when the store committed the change (ms since the epoch, the
   * frame's timestamp); local changes have none.
   */
  | { type: 'create' | 'update' | 'delete'; id: string; seq: number; value: T; pending?: boolean; time?: number }
  /** The join was refused (stream:join handler, or the token's streams claim). */
  | { type: 'unauthorized' }

/** What `on(type, cb)` callbacks get besides the event's data. */
export interface EventMeta {
  seq: number
  /** The item id the event was sent with, if any. */
  id: string | null
  /** When the store committed the event (ms since the epoch). */
  time?: number
}

type Listener = (...a: any[]) => void

/** No value: the item does not exist (on the server, under an overlay). */
const NONE: any = {}

/**
 * An optimistic write shown over the server's state: v is shown until
 * the change with seq arrives (or, while seq is unknown, until the call
 * answers); base is the server's value underneath.
 */
export interface Overlay<T> {
  v: T
  seq?: number
  base: T
}

/** Link is what a live subscription needs from its client. */
export interface Link {
  rejoin(l: Live<any>): void
  release(l: Live<any>): void
  settle(): void
  denied(l: Live<any>): void
}

/**
 * Live is a group (every item) or, with item set, one item of a group.
 * Frames are applied in sequence order: one at or below seq is a
 * duplicate and is dropped; a group frame past seq+1 means something was
 * missed, and the subscription resumes from seq.
 */
export class Live<T> {
  /** The group's items by id (an item subscription holds at most its own). */
  readonly items = new Map<string, T>()
  /** The sequence number of the state shown; undefined until the first snapshot. */
  seq: number | undefined
  /** The join was refused; the subscription is not renewed. */
  denied = false
  /** The version of the stream's contract, from the sync and schema frames; undefined for none. */
  contractVersion: number | undefined
  /** Current subscription id on the transport. */
  sub?: string
  /** When it was sent (ms since the epoch). */
  at = 0
  /** The group's presence, when it was joined with presence. */
  presence?: Presence<any>
  refs = 1
  /** Failed joins in a row (its retry backoff). */
  tries = 0
  private subs = new Set<Listener>()
  private over = new Map<string, Overlay<T>>()
  private events = new Map<string, Set<Listener>>()
  private schemas = new Set<Listener>()

  constructor(
    private link: Link,
    readonly stream: string,
    readonly group: string,
    readonly item?: string,
  ) {}

  /** The item's value (item subscriptions). */
  get value(): T | undefined {
    return this.items.get(this.item!)
  }

  /**
   * Calls cb(state, change) after every change: state is the live Map of
   * items (for an item, its value). The Map is updated in place; copy it
   * to keep a version.
   */
  subscribe(cb: (state: any, change: Change<T>) => void): () => void {
    this.subs.add(cb)
    return () => this.subs.delete(cb)
  }

  /** Calls cb(data, meta) for every stream::send event of this type. */
  on(type: string, cb: (data: any, meta: EventMeta) => void): () => void {
    let s = this.events.get(type)
    if (!s) this.events.set(type, (s = new Set()))
    s.add(cb)
    return () => s.delete(cb)
  }

  /** Calls cb(version) when the stream's contract changes (GET /schemas/{stream} serves it). */
  onSchema(cb: (version: number) => void): () => void {
    this.schemas.add(cb)
    return () => this.schemas.delete(cb)
  }

  /** Takes a version a frame tells; versions only go up, so an older one (a sync read before a definition, followed by its schema frame) is not passed on. */
  private contract(v: unknown) {
    if (typeof v !== 'number' || (this.contractVersion !== undefined && v <= this.contractVersion)) return
    const known = this.contractVersion !== undefined
    this.contractVersion = v
    if (known) for (const cb of this.schemas) cb(v)
  }

  /** Ends this handle; the subscription ends with the last one. */
  close(): void {
    if (this.refs > 0 && --this.refs === 0) this.link.release(this)
  }

  private emit(c: Change<T>) {
    const state = this.item === undefined ? this.items : this.value
    for (const cb of this.subs) cb(state, c)
  }

  /**
   * Applies a stream frame of this subscription; false, changing nothing,
   * when it is malformed (no seq, a group sync without items and ids of
   * the same length, a change without an item id).
   */
  apply(f: Frame): boolean {
    const e = f.event
    const seq = f.seq!
    if (!e || typeof e.type !== 'string') return false
    if (e.type === 'unauthorized') {
      this.denied = true
      this.link.denied(this)
      this.emit({ type: 'unauthorized' })
      return true
    }
    if (!Number.isSafeInteger(seq) || seq < 0) return false
    if (e.type === 'schema') {
      if (this.contractVersion === undefined) this.contractVersion = 0
      this.contract(e.contractVersion)
      return true
    }
    if (e.type === 'sync') {
      this.contract(e.contractVersion)
      const ids = e.ids
      const data = e.data
      if (this.item === undefined && !(Array.isArray(data) && Array.isArray(ids) && ids.length === data.length && ids.every((i) => typeof i === 'string')))
        return false
      const back = this.seq !== undefined && seq < this.seq
      this.items.clear()
      if (this.item !== undefined) {
        if (data != null) this.items.set(this.item, data as T)
      } else (data as T[]).forEach((v, i) => this.items.set(ids![i], v))
      this.seq = seq
      // Pending writes stay shown over the new state, unless it has them.
      for (const [id, o] of this.over) {
        o.base = this.items.has(id) ? this.items.get(id)! : NONE
        if (o.seq !== undefined && seq >= o.seq) this.over.delete(id)
        else this.items.set(id, o.v)
      }
      this.link.settle()
      this.emit({ type: e.resync || back ? 'resync' : 'snapshot', seq })
      return true
    }
    const id = f.id!
    const ev = e.event
    const change = /^(create|update|delete)$/.test(e.type)
    if (e.type === 'event' ? !ev || typeof ev.type !== 'string' : change && typeof id !== 'string') return false
    if (this.seq === undefined || seq <= this.seq) return true // before the snapshot, or seen
    // Every change of a group reaches a group subscription, so sequences
    // run without a hole; an item subscription sees its item's only.
    if (this.item === undefined && seq !== this.seq + 1) {
      this.link.rejoin(this)
      return true
    }
    this.seq = seq
    if (e.type === 'event') for (const cb of this.events.get(ev!.type) || []) cb(ev!.data, { seq, id, time: f.timestamp })
    if (!change) return true // an event, or a kind this client does not know
    const o = this.over.get(id)
    if (o) {
      o.base = e.type === 'delete' ? NONE : (e.data as T)
      if (o.seq === undefined || seq < o.seq) return true // the pending value stays shown
      this.over.delete(id)
    }
    if (e.type === 'delete') this.items.delete(id)
    else this.items.set(id, e.data as T)
    // The change that confirms a pending write ends it: pending false.
    this.emit({ type: e.type as 'create', id, seq, value: e.data as T, time: f.timestamp, ...(o && { pending: false }) })
    return true
  }

  /** Shows v (NONE: no item) for id, as a change that is pending or ends one. */
  private show(id: string, v: T, pending: boolean) {
    const had = this.items.has(id)
    const old = this.items.get(id)
    if (v === NONE) this.items.delete(id)
    else this.items.set(id, v)
    this.emit({ type: v === NONE ? 'delete' : had ? 'update' : 'create', id, seq: this.seq || 0, value: v === NONE ? old! : v, pending })
  }

  /** @internal Shows an optimistic write of id at once; undefined when id is not this subscription's. */
  pend(id: string, v: T): Overlay<T> | undefined {
    if (this.item !== undefined && this.item !== id) return
    const prev = this.over.get(id)
    const o = { v, base: prev ? prev.base : this.items.has(id) ? this.items.get(id)! : NONE }
    this.over.set(id, o)
    this.show(id, v, true)
    return o
  }

  /**
   * @internal The call behind o answered: ok with the seq of its change
   * (it stays shown until that change arrives; without a seq, the
   * server's value shows now), or not ok (rolled back).
   */
  end(id: string, o: Overlay<T>, ok: boolean, seq?: unknown) {
    if (this.over.get(id) !== o) return // a later write replaced it
    if (ok && typeof seq === 'number' && (this.seq === undefined || seq > this.seq)) o.seq = seq
    else {
      this.over.delete(id)
      this.show(id, o.base, false)
    }
  }
}
