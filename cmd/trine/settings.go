package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/origin"
	"github.com/trinehq/trine/queuemodule"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// engineSettings lists every key of `trine engine`, in --help order, each
// set into its field of c.
func engineSettings(c *engineConfig) []setting {
	return slices.Concat(listenerSettings(c), limitSettings(c), storeSettings(c), contractSettings(c), browserSettings(c), []setting{
		row("cpus", "N", "auto", "CPUs (or auto) the process sizes its Go scheduler (GOMAXPROCS) and socket writers for; auto: those its affinity mask and cgroup CPU quota allow, split with the other busy trine engines and gateways on the same CPUs, looked at every second, or 500 times as long as a look took where that is longer (GOMAXPROCS in the environment wins)", &c.CPUs, cpus),
		row("log-level", "LEVEL", "info", "debug, info, warn or error", &c.LogLevel, logLevel),
		row("log-format", "FORMAT", "text", "text or json (logs go to stderr)", &c.LogFormat, oneOf("must be text or json", "text", "json")),
		row("memory-release-idle", "DURATION", "500ms", "how often the process looks whether it went quiet (allocated under 1 MiB since the last look) while its heap holds at least 16 MiB and a quarter more than is live, to hand the free pages back to the system: an idle gateway's RSS then follows what its sockets hold; 0: never", &c.MemoryReleaseIdle, orNone("must be a duration such as 500ms, or 0 for never")),
	}, otelSettings(c))
}

// listenerSettings are the worker and HTTP listeners: gRPC, http
// triggers, HTTP-invoked functions, CORS and iii.
func listenerSettings(c *engineConfig) []setting {
	return []setting{
		row("grpc-addr", "ADDR", "127.0.0.1:49134", "gRPC listener for workers and the Trigger RPC", &c.GRPCAddr, addr),
		row("http-addr", "ADDR", "127.0.0.1:3111", "HTTP listener: http trigger routes, /healthz, /readyz, /metrics", &c.HTTPAddr, addr),
		row("http-max-body-bytes", "N", "1048576", "largest request body an http trigger accepts (413 above), unless its route sets max_body_bytes", &c.HTTP.MaxBodyBytes, positiveInt64),
		row("http-max-stream-body-bytes", "N", "1073741824", "the most a route's max_body_bytes may be; a route whose max_body_bytes is over --http-max-body-bytes streams its body to the function through request_body as it arrives", &c.HTTP.MaxStreamBodyBytes, positiveInt64),
		row("http-timeout", "DURATION", "30s", "deadline of the function behind an http trigger (504 after)", &c.HTTP.Timeout, positiveDuration),
		row("http-streaming", "on|off", "on", "give http trigger functions request_body and response channel refs (iii's http() helper); off saves two channels per request", &c.HTTPStreaming, onOff),
		row("http-invoke-hosts", "LIST", "*", "host patterns (path.Match: *, *.example.com) that HTTP-invoked functions (iii's registerfunction invocation) may call; empty: such registrations are refused", &c.HTTPInvoke.AllowedHosts, list),
		row("http-invoke-allow-http", "on|off", "off", "let HTTP-invoked functions use http:// URLs (off: https only)", &c.HTTPInvoke.AllowHTTP, onOff),
		row("http-invoke-allow-private", "on|off", "off", "let HTTP-invoked functions reach loopback, private and link-local addresses, checked on every connection (the engine's own listeners, on every local address, and 0.0.0.0 and :: stay refused)", &c.HTTPInvoke.AllowPrivate, onOff),
		row("http-invoke-env", "LIST", "", "environment variables an HTTP-invoked function's auth (secret_key, token_key, value_key) may name; others are refused, so a worker cannot make the engine send any other secret", &c.HTTPInvoke.Env, list),
		row("http-invoke-max-in-flight", "N", "64", "calls one worker connection's HTTP-invoked functions may have running at once; a further call fails with overloaded", &c.HTTPInvoke.MaxInFlight, positiveInt),
		row("http-cors-origins", "LIST", "", "comma-separated Origins whose pages may call http triggers from the browser (CORS, preflight answered); * for any; none: no CORS headers", &c.HTTPCORS.Origins, list),
		row("http-cors-methods", "LIST", "GET,POST,PUT,PATCH,DELETE", "with --http-cors-origins: the methods allowed", &c.HTTPCORS.Methods, list),
		row("http-cors-headers", "LIST", "Content-Type,Authorization", "with --http-cors-origins: the request headers allowed", &c.HTTPCORS.Headers, list),
		row("http-cors-credentials", "on|off", "off", "with --http-cors-origins: whether pages may send cookies and HTTP auth (not with *)", &c.HTTPCORS.Credentials, onOff),
		row("http-cors-max-age", "DURATION", "10m", "with --http-cors-origins: how long browsers may cache a preflight answer", &c.HTTPCORS.MaxAge, positiveDuration),
		row("iii-addr", "ADDR", "127.0.0.1:49135", "iii worker protocol listener (JSON over WebSocket, for iii SDK workers), with /ws/channels; off: none", &c.III.Addr, addrOrOff),
		row("iii-namespace-grace", "DURATION", "5s", "how long an iii worker's registrations wait for its engine::workers::register call", &c.III.NamespaceGrace, positiveDuration),
		row("iii-auth-function", "ID", "", "make the iii listener an RBAC one: this function admits each connection (iii's auth_function_id; fail closed) and its AuthResult limits what the worker may call and register", &c.III.Access.AuthFunctionID, functionID),
		row("iii-expose-functions", "PATTERNS", "", "comma-separated patterns of the functions iii workers may call (iii's expose_functions match filters, * anchored); with it or --iii-auth-function, anything not exposed is forbidden", &c.III.Access.ExposeFunctions, exposeFilters),
		row("iii-middleware-function", "ID", "", "function called instead of every function an iii worker calls, with {function_id, payload, context}; it calls the target itself", &c.III.Access.MiddlewareFunctionID, functionID),
	}
}

// limitSettings are the data directory and the engine's own bounds:
// calls, triggers, functions, registrations, messages, lists, channels.
func limitSettings(c *engineConfig) []setting {
	return []setting{
		row("data-dir", "DIR", "./trine-data", "data directory, created at start", &c.DataDir, nonEmpty),
		row("default-timeout", "DURATION", "30s", "deadline of calls whose caller sets none", &c.Engine.DefaultTimeout, positiveDuration),
		row("shutdown-grace", "DURATION", "10s", "time in-flight calls get to finish on SIGINT/SIGTERM", &c.Engine.ShutdownGrace, positiveDuration),
		row("max-triggers-per-worker", "N", "1000", "triggers one worker connection may own; more: overloaded", &c.Engine.MaxTriggersPerWorker, positiveInt),
		row("max-calls-per-worker", "N", strconv.Itoa(engine.DefaultMaxCallsPerWorker), "calls one worker connection may have in flight at once (awaited, void until their function returns, enqueues); one more is refused with overloaded", &c.Engine.MaxCallsPerWorker, positiveInt),
		row("max-call-bytes-per-worker", "N", strconv.Itoa(engine.DefaultMaxCallBytesPerWorker), "payload bytes of one worker connection's calls in flight together; one more is refused with overloaded (a larger call runs when it is the connection's only one)", &c.Engine.MaxCallBytesPerWorker, positiveInt),
		row("max-triggers", "N", "100000", "triggers all connections together may own; more: overloaded", &c.Engine.MaxTriggers, positiveInt),
		row("max-functions-per-worker", "N", "1000", "functions one worker connection may serve; more: overloaded", &c.Engine.MaxFunctionsPerWorker, positiveInt),
		row("max-functions", "N", "10000", "functions the engine may hold, built-ins included; more: overloaded", &c.Engine.MaxFunctions, positiveInt),
		row("max-registration-bytes-per-worker", "N", "16777216", "bytes one connection's registrations may hold (function ids, descriptions, metadata, schemas; trigger ids, configs, metadata; trigger types); more: overloaded", &c.Engine.MaxRegistrationBytesPerWorker, positiveInt),
		row("max-registration-bytes", "N", "268435456", "bytes all connections' registrations may hold together; more: overloaded", &c.Engine.MaxRegistrationBytes, positiveInt),
		row("trigger-fire-rate", "N", "200", "fires per second, with a burst of as many, of the triggers of one connection under a listener policy (trusted connections' are not limited); a fire past it is refused with overloaded", &c.Engine.TriggerFireRate, rate),
		row("max-message-bytes", "N", strconv.Itoa(grpcserver.DefaultMaxMessageBytes), "largest gRPC message, received or sent", &c.MaxMessageBytes, messageBytes),
		row("max-list-bytes", "N", strconv.Itoa(store.DefaultMaxListBytes), "largest answer of a list function (stream::list, list_groups, list_all, state::list, list_groups); one that would be larger is refused with message_too_large before it is built, naming limit and after to page with; lowered to --max-message-bytes less 16 KiB", &c.Engine.MaxListBytes, positiveInt),
		row("max-list-bytes-total", "N", strconv.Itoa(store.DefaultMaxListBytesTotal), "list answers being built at once hold at most this, each counted at --max-list-bytes; more wait for their turn until their deadline (then overloaded)", &c.MaxListBytesTotal, positiveInt),
		row("channels-max", "N", strconv.Itoa(channels.DefaultMaxChannels), "channels open at once in the engine (engine::channels::create, http trigger streams); more: overloaded", &c.Channels.MaxChannels, positiveInt),
		row("channels-max-per-connection", "N", strconv.Itoa(channels.DefaultMaxConnChannels), "channels one worker connection may have open (every connection may create channels, whatever its policy); more: overloaded; they are removed when it leaves", &c.Channels.MaxConnChannels, positiveInt),
		row("channels-max-bytes-per-connection", "N", strconv.Itoa(channels.DefaultMaxConnBufferBytes), "bytes buffered in the channels of one worker connection, together: past it their writers are not read until readers catch up", &c.Channels.MaxConnBufferBytes, positiveInt64),
		row("channels-max-bytes", "N", strconv.Itoa(channels.DefaultMaxTotalBufferBytes), "bytes buffered in all channels of the engine: past it every writer waits until readers catch up", &c.Channels.MaxTotalBufferBytes, positiveInt64),
	}
}

// storeSettings are the stream listener, TLS, NATS, the store and what
// the stream, state and queue modules keep.
func storeSettings(c *engineConfig) []setting {
	return []setting{
		row("stream-addr", "ADDR", "127.0.0.1:3112", "stream gateway listener for browsers (WebSocket and SSE)", &c.StreamAddr, addr),
		row("tls-cert", "FILE", "", "PEM certificate chain: every listener (gRPC, iii, stream, http) speaks TLS only; reloaded on SIGHUP", &c.TLS.Cert, asIs),
		row("tls-key", "FILE", "", "PEM private key of --tls-cert", &c.TLS.Key, asIs),
		row("tls-client-ca", "FILE", "", "PEM CA certificates: the worker listeners (gRPC, iii) require client certificates signed by them (mTLS); reloaded on SIGHUP", &c.TLS.ClientCA, asIs),
		row("nats-url", "URLS", "", "external NATS servers (comma-separated nats:// URLs); empty: run an embedded server", &c.NATS.URL, natsURLs),
		row("nats-connect-timeout", "DURATION", "30s", "with --nats-url: how long to keep trying at start while no NATS server answers (a cluster starting at the same time); then exit 1", &c.NATS.ConnectTimeout, positiveDuration),
		row("nats-addr", "ADDR", "127.0.0.1:4222", "where the embedded NATS server accepts other processes (gateways, engines); off: nowhere", &c.NATS.Addr, addrOrOff),
		{"nats-token", "TOKEN", "", "the embedded NATS server requires this token of processes connecting to --nats-addr (they use nats://TOKEN@host:port); generate: make a random one and print it on the start line", func(v string) (err error) {
			c.NATS.Token, c.NATS.TokenGenerated, err = natsToken(v)
			return err
		}},
		row("nats-creds", "FILE", "", "with --nats-url: NATS credentials file (user JWT and NKey seed)", &c.NATS.Creds, asIs),
		row("nats-nkey", "FILE", "", "with --nats-url: NATS NKey seed file", &c.NATS.NKey, asIs),
		row("nats-tls-ca", "FILE", "", "with --nats-url: PEM CA certificates that verify the NATS servers (implies TLS)", &c.NATS.TLS.ClientCA, asIs),
		row("nats-tls-cert", "FILE", "", "with --nats-url: client certificate for NATS servers that verify clients", &c.NATS.TLS.Cert, asIs),
		row("nats-tls-key", "FILE", "", "PEM private key of --nats-tls-cert", &c.NATS.TLS.Key, asIs),
		row("store", "KIND", "file", "stream store: file (durable, in <data-dir>/streams), memory, or jetstream (shared by every engine on the same NATS)", &c.Store.Kind, oneOf("must be file, memory or jetstream", "file", "memory", "jetstream")),
		row("store-replicas", "N", "1", "replicas of the JetStream stream that holds stream items (--store jetstream)", &c.Store.Replicas, positiveInt),
		row("store-batch-writes", "N", strconv.Itoa(jsstore.DefaultMaxBatchWrites), "with --store jetstream: the most concurrent writes to one group committed together, as one atomic batch (at most "+strconv.Itoa(jsstore.MaxBatchWritesLimit)+")", &c.Store.BatchWrites, positiveInt),
		row("store-batch-bytes", "N", strconv.Itoa(jsstore.DefaultMaxBatchBytes), "with --store jetstream: the most bytes (values, names, about 256 of headers each) of the writes to one group committed together; a larger write goes alone", &c.Store.BatchBytes, positiveInt),
		row("store-batch-wait", "DURATION", jsstore.DefaultBatchWait.String(), "with --store jetstream: the longest the next commit of a hot group waits for the writers of its last batch to write again, so that they go together rather than in two halves taking turns (also at most half the last commit's round trip); 0: never waits", &c.Store.BatchWait, orNone("must be a duration such as 2ms, or 0")),
		row("stream-history", "N", strconv.Itoa(streammodule.DefaultHistorySize), "events kept per group for clients resuming with since", &c.Stream.HistorySize, positiveInt),
		row("stream-history-bytes", "N", strconv.Itoa(streammodule.DefaultHistoryGroupBytes), "bytes of events kept per group for since (in-memory history; past it the oldest go and clients resync)", &c.Stream.HistoryGroupBytes, positiveInt),
		row("stream-history-total-bytes", "N", strconv.Itoa(streammodule.DefaultHistoryTotalBytes), "bytes of events kept in all groups for since (also the size bound of TRINE_EVENTS with --store jetstream)", &c.Stream.HistoryTotalBytes, positiveInt),
		row("stream-publish-queue-bytes", "N", strconv.Itoa(streammodule.DefaultPublishQueueBytes), "bytes of committed stream events waiting to be published to NATS; writes wait while the queue is full, so none is dropped for want of room (one NATS refuses is logged, counted and published again, after 100 ms doubling up to 5 s, until NATS takes it or a later event of its group; at most this many bytes of refused events are kept for that, the latest of each group)", &c.Stream.PublishQueueBytes, positiveInt),
		row("stream-max-item-bytes", "N", strconv.Itoa(streammodule.DefaultMaxItemBytes), "largest stream item or event data (compact JSON); lowered to the NATS server's max_payload less 20 KiB, so that every event is published, and to half of --max-message-bytes less 16 KiB, so that every result can be sent", &c.Stream.MaxItemBytes, positiveInt),
		row("state-max-value-bytes", "N", strconv.Itoa(statemodule.DefaultMaxValueBytes), "largest state value (compact JSON); larger ones get VALUE_TOO_LARGE and nothing is written. Lowered to half of the NATS server's max_payload less 12.5 KiB, so that every change's event (old and new value) is published, and to half of --max-message-bytes less 16 KiB", &c.State.MaxValueBytes, positiveInt),
		row("queue-ack-wait", "DURATION", queuemodule.DefaultAckWait.String(), "how long a queue job may go unacknowledged before JetStream gives it to another engine; the engine running it renews it every third of that, so only a dead engine (kill -9, a lost network) lets it lapse", &c.Queue.AckWait, positiveDuration),
		row("queue-max-concurrency", "N", strconv.Itoa(queuemodule.DefaultMaxConcurrency), "most a durable:subscriber trigger's queue_config.concurrency may ask for (calls of one subscription running at once on this engine); a trigger asking more is refused with INVALID_ARGUMENT", &c.Queue.MaxConcurrency, positiveInt),
		row("queue-inflight-bytes", "N", strconv.Itoa(queuemodule.DefaultInFlightBytes), "bytes of durable-topic messages this engine holds per function (fetched, not yet acknowledged); past it the function's subscriptions fetch nothing more until its calls finish", &c.Queue.InFlightBytes, positiveInt64),
		row("queue-inflight-bytes-total", "N", strconv.Itoa(queuemodule.DefaultInFlightBytesTotal), "bytes of durable-topic messages this engine holds for all functions together, whatever their number; a function past its fair share (this divided by the functions subscribed) takes only what no other function is owed, so stalled functions never starve the rest", &c.Queue.InFlightBytesTotal, positiveInt64),
	}
}

// browserSettings are how browsers are admitted and served: auth, the
// console, origins, the gateway's queues and presence.
func browserSettings(c *engineConfig) []setting {
	return []setting{
		row("stream-auth-function", "ID", "", "function that admits stream connections (empty: no auth)", &c.Gateway.AuthFunction, streamAuthFunction),
		row("stream-jwt-hmac-secret-file", "FILE", "", "admit browsers by HS256/384/512 JSON Web Tokens signed with the secret in FILE (at least 32 bytes), from ?token= or the trine_token cookie; claims become the context", &c.StreamJWT.HMACSecretFile, asIs),
		row("stream-jwt-public-key-file", "FILE", "", "admit browsers by JSON Web Tokens signed with the private half of the PEM public key in FILE (RSA, ECDSA, Ed25519)", &c.StreamJWT.PublicKeyFile, asIs),
		row("stream-jwks-url", "URL", "", "admit browsers by JSON Web Tokens signed with a key of this JWKS (fetched at start, every 15m, and on an unknown kid)", &c.StreamJWT.JWKSURL, httpURL),
		row("stream-jwt-audience", "AUD", "", "with JWT admission: the aud claim tokens must carry", &c.StreamJWT.Audience, asIs),
		row("stream-jwt-issuer", "ISS", "", "with JWT admission: the iss claim tokens must carry", &c.StreamJWT.Issuer, asIs),
		row("console", "MODE", "auto", "the live console at /console on the HTTP listener: auto serves it to anyone on a loopback --http-addr and elsewhere only with a console token (--console-tokens-file, or a --stream-jwt-* token with \"console\": true); off: not served", &c.Console.Mode, oneOf("want auto or off", "auto", "off")),
		row("console-addr", "ADDR", "", "serve the console on a listener of its own instead of --http-addr (host:port), so that no page of an http trigger shares its origin; the loopback rule of --console applies to this address", &c.Console.Addr, asIs),
		row("console-tokens-file", "FILE", "", "tokens that open the console on any listener: a tokens file (sha256 of each token, as a listener's tokens_file); reloaded on SIGHUP", &c.Console.TokensFile, asIs),
		row("allowed-origins", "LIST", "", "comma-separated browser Origins (scheme://host[:port]) allowed besides same-origin pages and, on a loopback listener, loopback pages (* for any): stream gateway, iii listener, channels", &c.AllowedOrigins, origins),
		row("allowed-hosts", "LIST", "", "comma-separated public host names of the browser-facing listeners (stream gateway, iii listener, channels): Host values accepted besides loopback ones, and hosts whose pages are same-origin; a loopback listener accepts only loopback hosts and these (DNS rebinding)", &c.AllowedHosts, list),
		row("stream-max-frame-bytes", "N", strconv.Itoa(gateway.DefaultMaxFrameBytes), "largest message a browser may send (larger: close 1009)", &c.Gateway.MaxFrameBytes, positiveInt64),
		row("stream-queue-messages", "N", strconv.Itoa(gateway.DefaultQueueMessages), "outbound frames queued per connection before it is closed (1008)", &c.Gateway.QueueMessages, positiveInt),
		row("stream-queue-bytes", "N", strconv.Itoa(gateway.DefaultQueueBytes), "outbound bytes queued per connection before it is closed (1008)", &c.Gateway.QueueBytes, positiveInt),
		row("stream-max-catchups", "N", strconv.Itoa(gateway.DefaultMaxCatchUps), "snapshots and replays per connection that its writer has not taken yet (more joins wait): what a client that never reads can hold", &c.Gateway.MaxCatchUps, positiveInt),
		row("stream-max-catchups-total", "N", strconv.Itoa(gateway.DefaultMaxCatchUpsTotal), "snapshot, page and history reads under way at once in the whole gateway (joins waiting for the same snapshot share one read)", &c.Gateway.MaxCatchUpsTotal, positiveInt),
		row("stream-snapshot-page-bytes", "N", strconv.Itoa(gateway.DefaultSnapshotPageBytes), "a group snapshot is read and written in pages of this many bytes (one message in several frames): what one snapshot in flight holds", &c.Gateway.SnapshotPageBytes, positiveInt),
		row("stream-snapshot-coalesce", "DURATION", gateway.DefaultSnapshotCoalesce.String(), "joins within this time of a snapshot read of a group share it (a reconnect storm costs one read); 0: no sharing window", &c.Gateway.SnapshotCoalesce, orNone("must be a duration such as 50ms, or 0")),
		row("stream-contract-streams", "N", strconv.Itoa(gateway.DefaultKnownContracts), "streams whose newest contract version the gateway remembers from definitions' notices, to tell a join sharing an older snapshot read, or resuming with since (past it, or --stream-contract-stream-bytes: no new stream)", &c.Gateway.KnownContracts, positiveInt),
		row("stream-contract-stream-bytes", "N", strconv.Itoa(gateway.DefaultKnownContractBytes), "bytes of the stream names those remembered versions hold", &c.Gateway.KnownContractBytes, positiveInt),
		row("stream-ping-interval", "DURATION", gateway.DefaultPingInterval.String(), "how often browsers are pinged; silent for two intervals: closed", &c.Gateway.PingInterval, positiveDuration),
		row("stream-sse-keepalive", "DURATION", gateway.DefaultSSEKeepAlive.String(), "an SSE stream silent this long gets a keep-alive comment, so clients find a dead one within seconds", &c.Gateway.SSEKeepAlive, positiveDuration),
		row("stream-session-posts", "N", strconv.Itoa(gateway.DefaultSessionPosts), "POSTs (/stream/session, /stream/auth) one SSE session may send a second; more get 429 rate_limited", &c.Gateway.SessionPosts, positiveInt),
		row("stream-write-timeout", "DURATION", gateway.DefaultWriteTimeout.String(), "longest a write to one browser may block", &c.Gateway.WriteTimeout, positiveDuration),
		row("stream-latency-labels", "N", strconv.Itoa(gateway.DefaultStreamLabels), "streams named in trine_stream_client_latency_seconds: the first N to deliver an event; later ones are _other", &c.Gateway.StreamLabels, positiveInt),
		row("stream-latency-every", "DURATION", gateway.DefaultClientLatencyEvery.String(), "least time between two latency samples one browser connection may report (more are dropped and counted); 0: none taken", &c.Gateway.ClientLatencyEvery, orNone("must be a duration such as 500ms, or 0")),
		row("stream-latency-max", "DURATION", gateway.DefaultClientLatencyMax.String(), "largest latency sample a browser may report (larger: refused with bad_frame)", &c.Gateway.ClientLatencyMax, positiveDuration),
		row("presence-grace", "DURATION", gateway.DefaultPresenceGrace.String(), "how long a presence member stays after its last connection went: a reload within it is neither a leave nor a join; 0: none", &c.Gateway.PresenceGrace, orNone("must be a duration such as 5s, or 0")),
		row("presence-ttl", "DURATION", natsfanout.DefaultPresenceTTL.String(), "lease of a gateway's presence members in JetStream, renewed every third of it: a dead gateway's members leave within it (the process that creates the bucket sets it)", &c.Presence.TTL, leaseDuration),
		row("presence-replicas", "N", "1", "copies of the presence bucket (TRINE_PRESENCE) in a JetStream cluster", &c.Presence.Replicas, positiveInt),
		row("presence-max-members", "N", strconv.Itoa(gateway.DefaultPresenceMaxMembers), "past this many members a group's presence subscribers get counts instead of members (pages on request)", &c.Gateway.PresenceMaxMembers, positiveInt),
		row("presence-max-meta-bytes", "N", strconv.Itoa(gateway.DefaultPresenceMaxMetaBytes), "largest presence meta of a join (compact JSON); larger: presence_meta_too_large, nothing changes", &c.Gateway.PresenceMaxMetaBytes, positiveInt),
		row("presence-max-per-connection", "N", strconv.Itoa(gateway.DefaultPresenceMaxPerConn), "presence subscriptions per connection (so at most this many times --presence-max-meta-bytes of meta); more: presence_limit", &c.Gateway.PresenceMaxPerConn, positiveInt),
		row("presence-max-total", "N", strconv.Itoa(gateway.DefaultPresenceMaxTotal), "presence subscriptions in the whole gateway; more: presence_limit", &c.Gateway.PresenceMaxTotal, positiveInt),
		row("presence-rate-bytes", "N", strconv.Itoa(gateway.DefaultPresenceRateBytes), "bytes a second of presence frames the gateway sends (each frame counts 64 more); changes past it wait and merge, so that a storm of joins never crowds out stream events", &c.Gateway.PresenceRateBytes, positiveInt),
		row("presence-max-total-bytes", "N", strconv.Itoa(gateway.DefaultPresenceMaxTotalBytes), "bytes of presence state in the whole gateway (meta plus 128 per subscription); more: presence_limit", &c.Gateway.PresenceMaxTotalBytes, positiveInt),
	}
}

// row is a setting read by parse into *dst. A value parse refuses leaves
// *dst as it was.
func row[T any](flag, arg, def, usage string, dst *T, parse func(string) (T, error)) setting {
	return setting{flag, arg, def, usage, func(v string) error {
		x, err := parse(v)
		if err != nil {
			return err
		}
		*dst = x
		return nil
	}}
}

// The parsers of the rows. Each returns the value of a setting, or why
// it is not one.

func positiveInt64(v string) (int64, error) {
	n, err := positiveInt(v)
	return int64(n), err
}

func asIs(v string) (string, error) { return v, nil }

// cpus is a number of CPUs, or auto (0).
func cpus(v string) (int, error) {
	if v == "auto" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errors.New("must be a number of CPUs (1 or more) or auto")
	}
	return n, nil
}

// addr is a listen address, host:port.
func addr(v string) (string, error) { return v, checkAddr(v) }

// addrOrOff is a listen address, or off.
func addrOrOff(v string) (string, error) {
	if v == "off" {
		return v, nil
	}
	return v, checkAddr(v)
}

// list is a comma-separated list.
func list(v string) ([]string, error) { return splitList(v), nil }

func onOff(v string) (bool, error) {
	switch v {
	case "on", "off":
		return v == "on", nil
	}
	return false, errors.New("must be on or off")
}

func nonEmpty(v string) (string, error) {
	if v == "" {
		return "", errors.New("must not be empty")
	}
	return v, nil
}

// oneOf accepts the values choices, refusing others with msg.
func oneOf(msg string, choices ...string) func(string) (string, error) {
	return func(v string) (string, error) {
		if slices.Contains(choices, v) {
			return v, nil
		}
		return "", errors.New(msg)
	}
}

// orNone is a duration of 0 or more; 0 gives -1, the modules' "none".
func orNone(msg string) func(string) (time.Duration, error) {
	return func(v string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, errors.New(msg)
		}
		if d == 0 {
			return -1, nil
		}
		return d, nil
	}
}

// functionID is a function id, or empty.
func functionID(v string) (string, error) { return v, checkOptionalID("function id", v) }

// streamAuthFunction is a function id, or empty, refused with the
// engine's message alone.
func streamAuthFunction(v string) (string, error) {
	if v != "" {
		if err := engine.ValidateID("function id", v); err != nil {
			return "", errors.New(engine.AsError(err).Message)
		}
	}
	return v, nil
}

// exposeFilters are iii's expose_functions match filters.
func exposeFilters(v string) ([]engine.Filter, error) {
	var out []engine.Filter
	for _, p := range splitList(v) {
		out = append(out, engine.Filter{Match: p})
	}
	return out, nil
}

func rate(v string) (float64, error) {
	n, err := positiveInt(v)
	return float64(n), err
}

func messageBytes(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > math.MaxInt32 {
		return 0, fmt.Errorf("must be an integer from 1 to %d", math.MaxInt32)
	}
	return n, nil
}

func natsURLs(v string) (string, error) {
	for u := range strings.SplitSeq(v, ",") {
		if u = strings.TrimSpace(u); u != "" && !strings.Contains(u, "://") {
			return "", fmt.Errorf("%q is not a URL such as nats://host:4222", u)
		}
	}
	return v, nil
}

// natsToken is the token, or a random one for generate (then generated).
func natsToken(v string) (token string, generated bool, err error) {
	if v != "generate" {
		return v, false, nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", false, err
	}
	return hex.EncodeToString(b), true, nil
}

func httpURL(v string) (string, error) {
	if v != "" && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
		return "", errors.New("must be an http(s) URL")
	}
	return v, nil
}

func origins(v string) ([]string, error) {
	out := splitList(v)
	for _, o := range out {
		if err := origin.CheckAllowed(o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// leaseDuration is a positive duration of at least a second.
func leaseDuration(v string) (time.Duration, error) {
	d, err := positiveDuration(v)
	if err == nil && d < time.Second {
		err = errors.New("must be at least 1s")
	}
	return d, err
}

func logLevel(v string) (slog.Level, error) {
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errors.New("must be debug, info, warn or error")
}
