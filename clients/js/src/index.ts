// @trine/client: live groups and items of Trine streams, kept in sync over
// one connection to a stream gateway, and calls to functions a public iii
// listener exposes.
export { connect, Client } from './client.js'
export type { State, Options, CallOptions, Group, GroupOptions, Item, StreamTypes, FunctionTypes, TypedClient, TypedGroup, TypedOn } from './client.js'
export { ClientError } from './call.js'
export type { Change, EventMeta } from './live.js'
export type { WebSocketLike } from './transport.js'
export type { Presence, Member, PresenceChange, PresencePage, PresenceOption } from './presence.js'
