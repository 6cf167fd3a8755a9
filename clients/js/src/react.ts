// @trine/client/react: hooks over a Client. Each hook takes a handle when
// its component mounts and closes it when it unmounts; handles are counted
// and a subscription lingers after its last one closes (Options.linger),
// so React StrictMode's mount, unmount and mount again makes one join and
// no second socket.
import { useEffect, useReducer, useState, useSyncExternalStore } from 'react'
import type { Client, Group, Item, State } from './client.js'
import type { Member, PresenceOption } from './presence.js'

function useLive<L extends Group<any> | Item<any>>(open: () => L, deps: unknown[]): L | undefined {
  const [live, setLive] = useState<L>()
  const [, changed] = useReducer((n: number) => n + 1, 0)
  useEffect(() => {
    const l = open()
    setLive(l)
    const off = (l.subscribe as (cb: () => void) => () => void)(changed)
    return () => {
      off()
      l.close()
    }
  }, deps)
  return live
}

/**
 * The live group (stream, group): its items (a Map updated in place: use
 * seq to tell versions apart) and seq; re-renders on every change. Empty,
 * with seq undefined, until the first snapshot.
 */
export function useGroup<T = unknown>(client: Client, stream: string, group: string) {
  const g = useLive(() => client.group<T>(stream, group), [client, stream, group])
  return { items: g?.items ?? new Map<string, T>(), seq: g?.seq, denied: !!g?.denied, group: g }
}

/**
 * The presence of (stream, group), joined with presence (true, or
 * {meta}; a change of meta joins again with it): the members by identity
 * (a Map updated in place), count, large (counts only, past
 * --presence-max-members) and error; re-renders on every change.
 */
export function usePresence<M = unknown>(client: Client, stream: string, group: string, presence: PresenceOption = true) {
  const [g, setG] = useState<Group<unknown, M>>()
  const [n, changed] = useReducer((n: number) => n + 1, 0)
  const want = JSON.stringify(presence)
  useEffect(() => {
    const l = client.group<unknown, M>(stream, group, { presence })
    setG(l)
    const off = l.presence?.subscribe(() => changed())
    return () => {
      off?.()
      l.close()
    }
  }, [client, stream, group, want])
  const p = g?.presence
  return { members: p?.members ?? new Map<string, Member<M>>(), count: p?.count, large: !!p?.large, error: p?.error, version: n, presence: p }
}

/** The live item id of (stream, group): its value and seq. */
export function useItem<T = unknown>(client: Client, stream: string, group: string, id: string) {
  const it = useLive(() => client.item<T>(stream, group, id), [client, stream, group, id])
  return { value: it?.value, seq: it?.seq, denied: !!it?.denied, item: it }
}

/** The client's connection state. */
export function useConnectionState(client: Client): State {
  return useSyncExternalStore(
    (cb) => client.on('state', cb),
    () => client.state,
  )
}
