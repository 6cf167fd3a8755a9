// Package engine is Trine's transport-free core: the function registry (built-in
// handlers and worker replicas behind one Handler interface), the invocation
// router (ids, deadlines, cancellation, least-in-flight balancing), the
// trigger-type and trigger registries, and worker sessions.
//
// It sits in the middle of the architecture: transports such as
// engine/grpcserver adapt a network session onto a *Session, and modules such
// as the StreamModule register built-in functions and trigger types. It imports
// no gRPC, WebSocket or NATS package.
//
// Concurrency: every exported method of *Engine and *Session is safe for
// concurrent use. A Session's Peer is called from many goroutines at once and
// must serialise its own writes. Handlers run on the caller's goroutine (or, for
// void calls, on a goroutine owned by the Engine and awaited by Run).
package engine
