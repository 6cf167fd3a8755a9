// Package iiiserver serves the iii engine's JSON-over-WebSocket worker
// protocol, so that workers built with the iii SDKs (Node, Python, Rust, Go)
// run against Trine unchanged. It is a transport: each connection is one
// engine.Session, and everything else is the engine's.
//
// Routes on the listener: GET / is a worker connection; GET /otel is a
// telemetry-only connection (it is never listed as a worker); GET
// /ws/channels/{id} goes to Config.Channels. On either socket, binary
// frames of OTLP JSON behind iii's prefix "OTLP" (traces) go to
// Config.Telemetry, within a byte rate, so that iii workers' spans join
// the engine's traces; "MTRC" and "LOGS" frames, and traces while tracing
// is off, are dropped and counted (TelemetryDropped).
//
// What matches iii: every message type of iii's catalogue with its
// lowercase "type" tag; unknown types and unknown fields are ignored, a
// null namespace is an absent one; workerregistered (worker id and reattach
// token) is the first message; reattach closes the previous connection of
// the same worker, once its token matches, before the replayed
// registrations apply; registrations are held until the worker's
// engine::workers::register call (or Config.NamespaceGrace) and then applied
// in arrival order; invokefunction and invocationresult both ways, with
// error bodies ({code, message, stacktrace}) passed through unchanged, void
// calls (action void, or no invocation_id) answered by nothing; ping is
// answered with pong.
//
// What Trine does differently, on purpose:
//   - a second worker registering a function id joins its replica set;
//     no FUNCTION_NAMESPACE_CONFLICT for replicas, and worker names need
//     not be unique;
//   - calls have an engine-side deadline (the engine's default timeout),
//     and a worker that disconnects fails its in-flight calls at once with
//     worker_disconnected;
//   - a trigger whose type is unknown or whose provider refuses it is
//     answered with triggerregistrationresult carrying the error; a refused
//     trigger type is answered the same way (id = the type); a refused
//     function gets registrationrejected (FUNCTION_NAMESPACE_CONFLICT for
//     reserved or built-in ids, else the engine's code) with a message;
//   - only a trigger's owner may unregister it;
//   - a message whose fields have the wrong types is answered with
//     invalid_argument when it carries an invocation_id (invokefunction) or
//     an id (registertrigger); JSON that does not parse is dropped (logged);
//   - the server pings idle workers at the WebSocket level and disconnects
//     those that do not answer;
//   - namespaces are recorded (engine::workers::list) but do not partition
//     function ids: Trine has one function space;
//   - the enqueue action is refused with enqueue_error (no queues), a
//     function registered with "invocation" (called over HTTP by the
//     engine) is refused with registrationrejected invalid_argument, and
//     data is never rewritten (no _caller_worker_id);
//   - iii has no cancel message: when a call's deadline passes, the
//     worker's late answer is dropped.
//
// Concurrency: a Server is safe for concurrent use. Each connection runs
// inside its ServeHTTP with a reader, a writer, a registrar and a pinger
// goroutine, plus one goroutine per invocation it runs; all end before
// ServeHTTP returns, when the socket closes or Close is called.
package iiiserver
