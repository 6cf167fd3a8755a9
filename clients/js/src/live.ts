// Live groups and items: the materialized state of a subscription, kept in
// sequence order from its snapshot and events.
import type { Frame } from './transport.js'

/** The change that made the state a subscriber is given. */
export type Change<T> =
  /** A snapshot replaced the state: the first one (or one after the client dropped its state). */
  | { type: 'snapshot'; seq: number }
  /**
   * The gateway could not replay what was missed (its history no longer
   * reached back), so a fresh snapshot replaced the state at seq: changes
   * between the last seq shown and this one were not seen one by one, and
   * stream::send events among them were missed.
   */
  | { type: 'resync'; seq: number }
  | { type: 'create' | 'update' | 'delete'; id: string; seq: number; value: T }
  /** The join was refused (stream:join handler, or the token's streams claim). */
  | { type: 'unauthorized' }

/** What `on(type, cb)` callbacks get besides the event's data. */
export interface EventMeta {
  seq: number
  /** The item id the event was sent with, if any. */
  id: string | null
}

type Listener = (...a: any[]) => void

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
  /** Current subscription id on the transport. */
  sub?: string
  refs = 1
  private subs = new Set<Listener>()
  private events = new Map<string, Set<Listener>>()

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

  /** Ends this handle; the subscription ends with the last one. */
  close(): void {
    if (--this.refs === 0) this.link.release(this)
  }

  private emit(c: Change<T>) {
    const state = this.item === undefined ? this.items : this.value
    for (const cb of this.subs) cb(state, c)
  }

  /** Applies a stream frame of this subscription. */
  apply(f: Frame): void {
    const e = f.event!
    const seq = f.seq!
    if (e.type === 'sync') {
      this.items.clear()
      if (this.item !== undefined) {
        if (e.data != null) this.items.set(this.item, e.data as T)
      } else {
        const ids = e.ids || []
        ;(e.data as T[]).forEach((v, i) => this.items.set(ids[i], v))
      }
      this.seq = seq
      this.link.settle()
      return this.emit({ type: e.resync ? 'resync' : 'snapshot', seq })
    }
    if (e.type === 'unauthorized') {
      this.denied = true
      this.link.denied(this)
      return this.emit({ type: 'unauthorized' })
    }
    if (this.seq === undefined || seq <= this.seq) return // before the snapshot, or seen
    // Every change of a group reaches a group subscription, so sequences
    // run without a hole; an item subscription sees its item's only.
    if (this.item === undefined && seq !== this.seq + 1) return this.link.rejoin(this)
    this.seq = seq
    const id = f.id!
    if (e.type === 'event') {
      const ev = e.event!
      for (const cb of this.events.get(ev.type) || []) cb(ev.data, { seq, id })
      return
    }
    if (e.type === 'delete') this.items.delete(id)
    else this.items.set(id, e.data as T)
    this.emit({ type: e.type as 'create', id, seq, value: e.data as T })
  }
}
