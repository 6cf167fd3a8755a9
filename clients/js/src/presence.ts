// Presence: who is in a group, kept from the gateway's presence frames
// (docs/streams-api.md, "Presence") on a live group joined with presence.
import type { ClientError } from './call.js'
import type { Live } from './live.js'

/** A member of a group: one identity, however many connections it has there. */
export interface Member<M = unknown> {
  identity: string
  /** Its connections (sockets) in the group, on every gateway. */
  connections: number
  /** When its first current connection joined (ms since the epoch). */
  joined_at: number
  /** The meta of its latest join that had one. */
  meta?: M
  /** True for a connection without an identity (no auth): its identity is `anon:…`. */
  anonymous?: boolean
}

/** The change that made the members a subscriber is given. */
export type PresenceChange<M = unknown> =
  /**
   * The gateway's list replaced the members: the first one, one after a
   * reconnect, or one after counts only. joined and left are the members
   * that came and went compared with those shown before, so an identity
   * still there is not joined again.
   */
  | { type: 'sync'; joined: Member<M>[]; left: Member<M>[] }
  /** An identity's first connection came; its last went (after the grace); its connections or meta changed. */
  | { type: 'join' | 'leave' | 'update'; member: Member<M> }
  /** Counts only (more than --presence-max-members): members is empty, count is the group's. */
  | { type: 'count'; count: number }

/** A page of members, in identity order (stream::presence). */
export interface PresencePage<M = unknown> {
  members: Member<M>[]
  count: number
  more: boolean
}

/** What client.group's presence option takes: true, or the member's meta. */
export type PresenceOption = boolean | { meta?: unknown }

/** @internal What a Presence needs from its client. */
export interface PresenceLink {
  call<R>(functionId: string, payload: unknown): Promise<R>
  rejoin(l: Live<any>): void
}

type Listener = (members: Map<string, Member<any>>, change: PresenceChange<any>) => void

/** The join's presence field for a client.group presence option. */
export const presenceWant = (p?: PresenceOption): true | { meta: unknown } | undefined => (p && p !== true && p.meta !== undefined ? { meta: p.meta } : p ? true : undefined)

/**
 * The presence of a live group: members by identity, updated in place
 * from the gateway's presence frames.
 */
export class Presence<M = unknown> {
  /** The members by identity (an anonymous one's is `anon:…`); empty while counts only. */
  readonly members = new Map<string, Member<M>>()
  /** The group's member count; undefined before the first sync. */
  count: number | undefined
  /** True while the group has more members than --presence-max-members: count only, pages on request. */
  large = false
  /** Why presence is not shown, if it is not (presence_meta_too_large, presence_limit). */
  error?: ClientError
  private subs = new Set<Listener>()

  readonly stream: string
  readonly group: string

  constructor(
    private link: PresenceLink,
    private l: Live<any>,
    /** @internal The join's presence field (true or {meta}); undefined once the gateway refused it. */
    public want?: true | { meta: unknown },
  ) {
    this.stream = l.stream
    this.group = l.group
  }

  /**
   * Calls cb(members, change) after every change; returns a function
   * that unsubscribes. members is the live Map: copy it to keep a version.
   */
  subscribe(cb: (members: Map<string, Member<M>>, change: PresenceChange<M>) => void): () => void {
    this.subs.add(cb as Listener)
    return () => this.subs.delete(cb as Listener)
  }

  /**
   * A page of the group's members in identity order after `after` (at
   * most `limit`, default and maximum 1,000), through stream::presence:
   * needs the client's callUrl.
   */
  page(opts: { after?: string; limit?: number } = {}): Promise<PresencePage<M>> {
    return this.link.call('stream::presence', { stream_name: this.stream, group_id: this.group, ...opts })
  }

  /**
   * Sets this connection's meta (JSON, up to --presence-max-meta-bytes):
   * the group is joined again with it, and every subscriber gets an
   * update of this member.
   */
  setMeta(meta: unknown): void {
    this.want = { meta }
    this.link.rejoin(this.l)
  }

  private emit(c: PresenceChange<M>) {
    for (const cb of this.subs) cb(this.members, c)
  }

  /** @internal Applies a presence frame's event. */
  apply(e: any): void {
    this.error = undefined
    const ms = this.members
    if (e.type === 'sync') {
      const old = new Map(ms)
      const joined: Member<M>[] = []
      ms.clear()
      for (const m of e.members as Member<M>[]) {
        ms.set(m.identity, m)
        if (!old.delete(m.identity)) joined.push(m)
      }
      this.large = false
      this.count = ms.size
      return this.emit({ type: 'sync', joined, left: [...old.values()] })
    }
    if (e.type === 'count') {
      ms.clear()
      this.large = true
      this.count = e.count
      return this.emit({ type: 'count', count: e.count })
    }
    const m: Member<M> = e.member
    if (this.large || !m) return
    const had = ms.has(m.identity)
    // A join of a member shown is an update, an update of one not shown
    // a join: a page never sees one identity join twice.
    if (e.type === 'leave') {
      if (!ms.delete(m.identity)) return
    } else ms.set(m.identity, m)
    this.count = ms.size
    this.emit({ type: e.type === 'leave' ? 'leave' : had ? 'update' : 'join', member: m })
  }

  /** @internal The gateway refused presence (refused: the join goes again without it) or cannot serve it. */
  fail(e: ClientError, refused?: boolean): void {
    this.error = e
    if (refused) this.want = undefined
  }

  /** @internal This presence's state as a sync (or count) event, for a tab that joins. */
  state(): object {
    return this.large ? { type: 'count', count: this.count } : { type: 'sync', members: [...this.members.values()] }
  }
}

/** @internal Gives l presence p (client.group's option); true when l must join again to tell the gateway. */
export function takePresence(link: PresenceLink, l: Live<any>, p?: PresenceOption): boolean {
  const w = presenceWant(p)
  if (!w) return false
  if (!l.presence) l.presence = new Presence(link, l, w)
  else if ((w === true && l.presence.want) || JSON.stringify(w) === JSON.stringify(l.presence.want)) return false
  else l.presence.want = w
  return true
}
