package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
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
)

// engineSettings lists every key of `trine engine`, in --help order.
var engineSettings = []setting{
	addrRow("grpc-addr", "ADDR", "127.0.0.1:49134", "gRPC listener for workers and the Trigger RPC", func(c *engineConfig) *string { return &c.GRPCAddr }),
	addrRow("http-addr", "ADDR", "127.0.0.1:3111", "HTTP listener: http trigger routes, /healthz, /readyz, /metrics", func(c *engineConfig) *string { return &c.HTTPAddr }),
	positive64Row("http-max-body-bytes", "N", "1048576", "largest request body an http trigger accepts (413 above), unless its route sets max_body_bytes", func(c *engineConfig) *int64 { return &c.HTTPMaxBodyBytes }),
	positive64Row("http-max-stream-body-bytes", "N", "1073741824", "the most a route's max_body_bytes may be; a route whose max_body_bytes is over --http-max-body-bytes streams its body to the function through request_body as it arrives", func(c *engineConfig) *int64 { return &c.HTTPMaxStreamBody }),
	durationRow("http-timeout", "DURATION", "30s", "deadline of the function behind an http trigger (504 after)", func(c *engineConfig) *time.Duration { return &c.HTTPTimeout }),
	onOffRow("http-streaming", "on|off", "on", "give http trigger functions request_body and response channel refs (iii's http() helper); off saves two channels per request", func(c *engineConfig) *bool { return &c.HTTPStreaming }),
	listRow("http-invoke-hosts", "LIST", "*", "host patterns (path.Match: *, *.example.com) that HTTP-invoked functions (iii's registerfunction invocation) may call; empty: such registrations are refused", func(c *engineConfig) *[]string { return &c.HTTPInvoke.Hosts }),
	onOffRow("http-invoke-allow-http", "on|off", "off", "let HTTP-invoked functions use http:// URLs (off: https only)", func(c *engineConfig) *bool { return &c.HTTPInvoke.AllowHTTP }),
	onOffRow("http-invoke-allow-private", "on|off", "off", "let HTTP-invoked functions reach loopback, private and link-local addresses, checked on every connection (the engine's own listeners, on every local address, and 0.0.0.0 and :: stay refused)", func(c *engineConfig) *bool { return &c.HTTPInvoke.AllowPrivate }),
	listRow("http-invoke-env", "LIST", "", "environment variables an HTTP-invoked function's auth (secret_key, token_key, value_key) may name; others are refused, so a worker cannot make the engine send any other secret", func(c *engineConfig) *[]string { return &c.HTTPInvoke.Env }),
	positiveRow("http-invoke-max-in-flight", "N", "64", "calls one worker connection's HTTP-invoked functions may have running at once; a further call fails with overloaded", func(c *engineConfig) *int { return &c.HTTPInvoke.MaxInFlight }),
	listRow("http-cors-origins", "LIST", "", "comma-separated Origins whose pages may call http triggers from the browser (CORS, preflight answered); * for any; none: no CORS headers", func(c *engineConfig) *[]string { return &c.HTTPCORS.Origins }),
	listRow("http-cors-methods", "LIST", "GET,POST,PUT,PATCH,DELETE", "with --http-cors-origins: the methods allowed", func(c *engineConfig) *[]string { return &c.HTTPCORS.Methods }),
	listRow("http-cors-headers", "LIST", "Content-Type,Authorization", "with --http-cors-origins: the request headers allowed", func(c *engineConfig) *[]string { return &c.HTTPCORS.Headers }),
	onOffRow("http-cors-credentials", "on|off", "off", "with --http-cors-origins: whether pages may send cookies and HTTP auth (not with *)", func(c *engineConfig) *bool { return &c.HTTPCORS.Credentials }),
	durationRow("http-cors-max-age", "DURATION", "10m", "with --http-cors-origins: how long browsers may cache a preflight answer", func(c *engineConfig) *time.Duration { return &c.HTTPCORS.MaxAge }),
	{"iii-addr", "ADDR", "127.0.0.1:49135", "iii worker protocol listener (JSON over WebSocket, for iii SDK workers), with /ws/channels; off: none", func(c *engineConfig, v string) error {
		c.IIIAddr = v
		if v == "off" {
			return nil
		}
		return checkAddr(v)
	}},
	durationRow("iii-namespace-grace", "DURATION", "5s", "how long an iii worker's registrations wait for its engine::workers::register call", func(c *engineConfig) *time.Duration { return &c.IIINamespaceGrace }),
	{"iii-auth-function", "ID", "", "make the iii listener an RBAC one: this function admits each connection (iii's auth_function_id; fail closed) and its AuthResult limits what the worker may call and register", func(c *engineConfig, v string) error {
		c.IIIAuthFunction = v
		return checkOptionalID("function id", v)
	}},
	listRow("iii-expose-functions", "PATTERNS", "", "comma-separated patterns of the functions iii workers may call (iii's expose_functions match filters, * anchored); with it or --iii-auth-function, anything not exposed is forbidden", func(c *engineConfig) *[]string { return &c.IIIExpose }),
	{"iii-middleware-function", "ID", "", "function called instead of every function an iii worker calls, with {function_id, payload, context}; it calls the target itself", func(c *engineConfig, v string) error {
		c.IIIMiddleware = v
		return checkOptionalID("function id", v)
	}},
	{"data-dir", "DIR", "./trine-data", "data directory, created at start", func(c *engineConfig, v string) error {
		if v == "" {
			return errors.New("must not be empty")
		}
		c.DataDir = v
		return nil
	}},
	durationRow("default-timeout", "DURATION", "30s", "deadline of calls whose caller sets none", func(c *engineConfig) *time.Duration { return &c.DefaultTimeout }),
	durationRow("shutdown-grace", "DURATION", "10s", "time in-flight calls get to finish on SIGINT/SIGTERM", func(c *engineConfig) *time.Duration { return &c.ShutdownGrace }),
	positiveRow("max-triggers-per-worker", "N", "1000", "triggers one worker connection may own; more: overloaded", func(c *engineConfig) *int { return &c.MaxTriggersPerWorker }),
	positiveRow("max-triggers", "N", "100000", "triggers all connections together may own; more: overloaded", func(c *engineConfig) *int { return &c.MaxTriggers }),
	positiveRow("max-functions-per-worker", "N", "1000", "functions one worker connection may serve; more: overloaded", func(c *engineConfig) *int { return &c.MaxFunctionsPerWorker }),
	positiveRow("max-functions", "N", "10000", "functions the engine may hold, built-ins included; more: overloaded", func(c *engineConfig) *int { return &c.MaxFunctions }),
	positiveRow("max-registration-bytes-per-worker", "N", "16777216", "bytes one connection's registrations may hold (function ids, descriptions, metadata, schemas; trigger ids, configs, metadata; trigger types); more: overloaded", func(c *engineConfig) *int { return &c.MaxRegistrationBytesPerWorker }),
	positiveRow("max-registration-bytes", "N", "268435456", "bytes all connections' registrations may hold together; more: overloaded", func(c *engineConfig) *int { return &c.MaxRegistrationBytes }),
	{"trigger-fire-rate", "N", "200", "fires per second, with a burst of as many, of the triggers of one connection under a listener policy (trusted connections' are not limited); a fire past it is refused with overloaded", func(c *engineConfig, v string) (err error) {
		n, err := positiveInt(v)
		c.TriggerFireRate = float64(n)
		return err
	}},
	{"max-message-bytes", "N", strconv.Itoa(grpcserver.DefaultMaxMessageBytes), "largest gRPC message, received or sent", func(c *engineConfig, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > math.MaxInt32 {
			return fmt.Errorf("must be an integer from 1 to %d", math.MaxInt32)
		}
		c.MaxMessageBytes = n
		return nil
	}},
	positiveRow("max-list-bytes", "N", strconv.Itoa(store.DefaultMaxListBytes), "largest answer of a list function (stream::list, list_groups, list_all, state::list, list_groups); one that would be larger is refused with message_too_large before it is built, naming limit and after to page with; lowered to --max-message-bytes less 16 KiB", func(c *engineConfig) *int { return &c.MaxListBytes }),
	positiveRow("max-list-bytes-total", "N", strconv.Itoa(store.DefaultMaxListBytesTotal), "list answers being built at once hold at most this, each counted at --max-list-bytes; more wait for their turn until their deadline (then overloaded)", func(c *engineConfig) *int { return &c.MaxListBytesTotal }),
	positiveRow("channels-max", "N", strconv.Itoa(channels.DefaultMaxChannels), "channels open at once in the engine (engine::channels::create, http trigger streams); more: overloaded", func(c *engineConfig) *int { return &c.Channels.Max }),
	positiveRow("channels-max-per-connection", "N", strconv.Itoa(channels.DefaultMaxConnChannels), "channels one worker connection may have open (every connection may create channels, whatever its policy); more: overloaded; they are removed when it leaves", func(c *engineConfig) *int { return &c.Channels.MaxPerConn }),
	positiveRow("channels-max-bytes-per-connection", "N", strconv.Itoa(channels.DefaultMaxConnBufferBytes), "bytes buffered in the channels of one worker connection, together: past it their writers are not read until readers catch up", func(c *engineConfig) *int { return &c.Channels.MaxBytesPerConn }),
	positiveRow("channels-max-bytes", "N", strconv.Itoa(channels.DefaultMaxTotalBufferBytes), "bytes buffered in all channels of the engine: past it every writer waits until readers catch up", func(c *engineConfig) *int { return &c.Channels.MaxBytes }),
	addrRow("stream-addr", "ADDR", "127.0.0.1:3112", "stream gateway listener for browsers (WebSocket and SSE)", func(c *engineConfig) *string { return &c.StreamAddr }),
	stringRow("tls-cert", "FILE", "", "PEM certificate chain: every listener (gRPC, iii, stream, http) speaks TLS only; reloaded on SIGHUP", func(c *engineConfig) *string { return &c.TLS.Cert }),
	stringRow("tls-key", "FILE", "", "PEM private key of --tls-cert", func(c *engineConfig) *string { return &c.TLS.Key }),
	stringRow("tls-client-ca", "FILE", "", "PEM CA certificates: the worker listeners (gRPC, iii) require client certificates signed by them (mTLS); reloaded on SIGHUP", func(c *engineConfig) *string { return &c.TLS.ClientCA }),
	{"nats-url", "URLS", "", "external NATS servers (comma-separated nats:// URLs); empty: run an embedded server", func(c *engineConfig, v string) error {
		for u := range strings.SplitSeq(v, ",") {
			if u = strings.TrimSpace(u); u != "" && !strings.Contains(u, "://") {
				return fmt.Errorf("%q is not a URL such as nats://host:4222", u)
			}
		}
		c.NATSURL = v
		return nil
	}},
	durationRow("nats-connect-timeout", "DURATION", "30s", "with --nats-url: how long to keep trying at start while no NATS server answers (a cluster starting at the same time); then exit 1", func(c *engineConfig) *time.Duration { return &c.NATSConnectTimeout }),
	{"nats-addr", "ADDR", "127.0.0.1:4222", "where the embedded NATS server accepts other processes (gateways, engines); off: nowhere", func(c *engineConfig, v string) error {
		c.NATSAddr = v
		if v == "off" {
			return nil
		}
		return checkAddr(v)
	}},
	{"nats-token", "TOKEN", "", "the embedded NATS server requires this token of processes connecting to --nats-addr (they use nats://TOKEN@host:port); generate: make a random one and print it on the start line", func(c *engineConfig, v string) error {
		c.NATSToken = v
		if v == "generate" {
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			c.NATSToken, c.NATSTokenGenerated = hex.EncodeToString(b), true
		}
		return nil
	}},
	stringRow("nats-creds", "FILE", "", "with --nats-url: NATS credentials file (user JWT and NKey seed)", func(c *engineConfig) *string { return &c.NATSCreds }),
	stringRow("nats-nkey", "FILE", "", "with --nats-url: NATS NKey seed file", func(c *engineConfig) *string { return &c.NATSNKey }),
	stringRow("nats-tls-ca", "FILE", "", "with --nats-url: PEM CA certificates that verify the NATS servers (implies TLS)", func(c *engineConfig) *string { return &c.NATSTLS.ClientCA }),
	stringRow("nats-tls-cert", "FILE", "", "with --nats-url: client certificate for NATS servers that verify clients", func(c *engineConfig) *string { return &c.NATSTLS.Cert }),
	stringRow("nats-tls-key", "FILE", "", "PEM private key of --nats-tls-cert", func(c *engineConfig) *string { return &c.NATSTLS.Key }),
	{"store", "KIND", "file", "stream store: file (durable, in <data-dir>/streams), memory, or jetstream (shared by every engine on the same NATS)", func(c *engineConfig, v string) error {
		switch v {
		case "file", "memory", "jetstream":
			c.Store = v
			return nil
		}
		return errors.New("must be file, memory or jetstream")
	}},
	positiveRow("store-replicas", "N", "1", "replicas of the JetStream stream that holds stream items (--store jetstream)", func(c *engineConfig) *int { return &c.StoreReplicas }),
	positiveRow("stream-history", "N", strconv.Itoa(streammodule.DefaultHistorySize), "events kept per group for clients resuming with since", func(c *engineConfig) *int { return &c.StreamHistory }),
	positiveRow("stream-history-bytes", "N", strconv.Itoa(streammodule.DefaultHistoryGroupBytes), "bytes of events kept per group for since (in-memory history; past it the oldest go and clients resync)", func(c *engineConfig) *int { return &c.StreamHistoryBytes }),
	positiveRow("stream-history-total-bytes", "N", strconv.Itoa(streammodule.DefaultHistoryTotalBytes), "bytes of events kept in all groups for since (also the size bound of TRINE_EVENTS with --store jetstream)", func(c *engineConfig) *int { return &c.StreamHistoryTotal }),
	positiveRow("stream-publish-queue-bytes", "N", strconv.Itoa(streammodule.DefaultPublishQueueBytes), "bytes of committed stream events waiting to be published to NATS; writes wait while the queue is full, so no event is lost", func(c *engineConfig) *int { return &c.StreamPublishQueue }),
	positiveRow("stream-max-item-bytes", "N", strconv.Itoa(streammodule.DefaultMaxItemBytes), "largest stream item or event data (compact JSON); lowered to the NATS server's max_payload less 20 KiB, so that every event is published, and to half of --max-message-bytes less 16 KiB, so that every result can be sent", func(c *engineConfig) *int { return &c.StreamMaxItem }),
	positiveRow("state-max-value-bytes", "N", strconv.Itoa(statemodule.DefaultMaxValueBytes), "largest state value (compact JSON); larger ones get VALUE_TOO_LARGE and nothing is written. Lowered to half of the NATS server's max_payload less 12.5 KiB, so that every change's event (old and new value) is published, and to half of --max-message-bytes less 16 KiB", func(c *engineConfig) *int { return &c.StateMaxValue }),
	durationRow("queue-ack-wait", "DURATION", queuemodule.DefaultAckWait.String(), "how long a queue job may go unacknowledged before JetStream gives it to another engine; the engine running it renews it every third of that, so only a dead engine (kill -9, a lost network) lets it lapse", func(c *engineConfig) *time.Duration { return &c.QueueAckWait }),
	positiveRow("queue-max-concurrency", "N", strconv.Itoa(queuemodule.DefaultMaxConcurrency), "most a durable:subscriber trigger's queue_config.concurrency may ask for (calls of one subscription running at once on this engine); a trigger asking more is refused with INVALID_ARGUMENT", func(c *engineConfig) *int { return &c.QueueMaxConc }),
	positiveRow("queue-inflight-bytes", "N", strconv.Itoa(queuemodule.DefaultInFlightBytes), "bytes of durable-topic messages this engine holds per function (fetched, not yet acknowledged); past it the function's subscriptions fetch nothing more until its calls finish", func(c *engineConfig) *int { return &c.QueueInFlight }),
	positiveRow("queue-inflight-bytes-total", "N", strconv.Itoa(queuemodule.DefaultInFlightBytesTotal), "bytes of durable-topic messages this engine holds for all functions together, whatever their number; a function past its fair share (this divided by the functions subscribed) takes only what no other function is owed, so stalled functions never starve the rest", func(c *engineConfig) *int { return &c.QueueInFlightAll }),
	{"stream-auth-function", "ID", "", "function that admits stream connections (empty: no auth)", func(c *engineConfig, v string) error {
		if v != "" {
			if err := engine.ValidateID("function id", v); err != nil {
				return errors.New(engine.AsError(err).Message)
			}
		}
		c.StreamAuthFunction = v
		return nil
	}},
	stringRow("stream-jwt-hmac-secret-file", "FILE", "", "admit browsers by HS256/384/512 JSON Web Tokens signed with the secret in FILE (at least 32 bytes), from ?token= or the trine_token cookie; claims become the context", func(c *engineConfig) *string { return &c.StreamJWT.HMACSecretFile }),
	stringRow("stream-jwt-public-key-file", "FILE", "", "admit browsers by JSON Web Tokens signed with the private half of the PEM public key in FILE (RSA, ECDSA, Ed25519)", func(c *engineConfig) *string { return &c.StreamJWT.PublicKeyFile }),
	{"stream-jwks-url", "URL", "", "admit browsers by JSON Web Tokens signed with a key of this JWKS (fetched at start, every 15m, and on an unknown kid)", func(c *engineConfig, v string) error {
		if v != "" && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
			return errors.New("must be an http(s) URL")
		}
		c.StreamJWT.JWKSURL = v
		return nil
	}},
	stringRow("stream-jwt-audience", "AUD", "", "with JWT admission: the aud claim tokens must carry", func(c *engineConfig) *string { return &c.StreamJWT.Audience }),
	stringRow("stream-jwt-issuer", "ISS", "", "with JWT admission: the iss claim tokens must carry", func(c *engineConfig) *string { return &c.StreamJWT.Issuer }),
	{"console", "MODE", "auto", "the live console at /console on the HTTP listener: auto serves it to anyone on a loopback --http-addr and elsewhere only with a console token (--console-tokens-file, or a --stream-jwt-* token with \"console\": true); off: not served", func(c *engineConfig, v string) error {
		if v != "auto" && v != "off" {
			return errors.New("want auto or off")
		}
		c.Console = v
		return nil
	}},
	stringRow("console-addr", "ADDR", "", "serve the console on a listener of its own instead of --http-addr (host:port), so that no page of an http trigger shares its origin; the loopback rule of --console applies to this address", func(c *engineConfig) *string { return &c.ConsoleAddr }),
	stringRow("console-tokens-file", "FILE", "", "tokens that open the console on any listener: a tokens file (sha256 of each token, as a listener's tokens_file); reloaded on SIGHUP", func(c *engineConfig) *string { return &c.ConsoleTokensFile }),
	{"allowed-origins", "LIST", "", "comma-separated browser Origins (scheme://host[:port]) allowed besides same-origin pages and, on a loopback listener, loopback pages (* for any): stream gateway, iii listener, channels", func(c *engineConfig, v string) error {
		c.AllowedOrigins = splitList(v)
		for _, o := range c.AllowedOrigins {
			if err := origin.CheckAllowed(o); err != nil {
				return err
			}
		}
		return nil
	}},
	listRow("allowed-hosts", "LIST", "", "comma-separated public host names of the browser-facing listeners (stream gateway, iii listener, channels): Host values accepted besides loopback ones, and hosts whose pages are same-origin; a loopback listener accepts only loopback hosts and these (DNS rebinding)", func(c *engineConfig) *[]string { return &c.AllowedHosts }),
	positive64Row("stream-max-frame-bytes", "N", strconv.Itoa(gateway.DefaultMaxFrameBytes), "largest message a browser may send (larger: close 1009)", func(c *engineConfig) *int64 { return &c.StreamMaxFrame }),
	positiveRow("stream-queue-messages", "N", strconv.Itoa(gateway.DefaultQueueMessages), "outbound frames queued per connection before it is closed (1008)", func(c *engineConfig) *int { return &c.StreamQueueMsgs }),
	positiveRow("stream-queue-bytes", "N", strconv.Itoa(gateway.DefaultQueueBytes), "outbound bytes queued per connection before it is closed (1008)", func(c *engineConfig) *int { return &c.StreamQueueBytes }),
	positiveRow("stream-max-catchups", "N", strconv.Itoa(gateway.DefaultMaxCatchUps), "snapshots and replays per connection that its writer has not taken yet (more joins wait): what a client that never reads can hold", func(c *engineConfig) *int { return &c.StreamCatchUps }),
	positiveRow("stream-max-catchups-total", "N", strconv.Itoa(gateway.DefaultMaxCatchUpsTotal), "snapshot, page and history reads under way at once in the whole gateway (joins waiting for the same snapshot share one read)", func(c *engineConfig) *int { return &c.StreamCatchUpsTotal }),
	positiveRow("stream-snapshot-page-bytes", "N", strconv.Itoa(gateway.DefaultSnapshotPageBytes), "a group snapshot is read and written in pages of this many bytes (one message in several frames): what one snapshot in flight holds", func(c *engineConfig) *int { return &c.StreamSnapshotPage }),
	{"stream-snapshot-coalesce", "DURATION", gateway.DefaultSnapshotCoalesce.String(), "joins within this time of a snapshot read of a group share it (a reconnect storm costs one read); 0: no sharing window", func(c *engineConfig, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("must be a duration such as 50ms, or 0")
		}
		c.StreamCoalesce = d
		if d == 0 {
			c.StreamCoalesce = -1
		}
		return nil
	}},
	durationRow("stream-ping-interval", "DURATION", gateway.DefaultPingInterval.String(), "how often browsers are pinged; silent for two intervals: closed", func(c *engineConfig) *time.Duration { return &c.StreamPing }),
	durationRow("stream-sse-keepalive", "DURATION", gateway.DefaultSSEKeepAlive.String(), "an SSE stream silent this long gets a keep-alive comment, so clients find a dead one within seconds", func(c *engineConfig) *time.Duration { return &c.StreamSSEKeepAlive }),
	positiveRow("stream-session-posts", "N", strconv.Itoa(gateway.DefaultSessionPosts), "POSTs (/stream/session, /stream/auth) one SSE session may send a second; more get 429 rate_limited", func(c *engineConfig) *int { return &c.StreamSessionPosts }),
	durationRow("stream-write-timeout", "DURATION", gateway.DefaultWriteTimeout.String(), "longest a write to one browser may block", func(c *engineConfig) *time.Duration { return &c.StreamWriteTimeout }),
	{"presence-grace", "DURATION", gateway.DefaultPresenceGrace.String(), "how long a presence member stays after its last connection went: a reload within it is neither a leave nor a join; 0: none", func(c *engineConfig, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("must be a duration such as 5s, or 0")
		}
		c.Presence.Grace = d
		if d == 0 {
			c.Presence.Grace = -1
		}
		return nil
	}},
	{"presence-ttl", "DURATION", natsfanout.DefaultPresenceTTL.String(), "lease of a gateway's presence members in JetStream, renewed every third of it: a dead gateway's members leave within it (the process that creates the bucket sets it)", func(c *engineConfig, v string) (err error) {
		c.Presence.TTL, err = positiveDuration(v)
		if err == nil && c.Presence.TTL < time.Second {
			err = errors.New("must be at least 1s")
		}
		return err
	}},
	positiveRow("presence-replicas", "N", "1", "copies of the presence bucket (TRINE_PRESENCE) in a JetStream cluster", func(c *engineConfig) *int { return &c.Presence.Replicas }),
	positiveRow("presence-max-members", "N", strconv.Itoa(gateway.DefaultPresenceMaxMembers), "past this many members a group's presence subscribers get counts instead of members (pages on request)", func(c *engineConfig) *int { return &c.Presence.MaxMembers }),
	positiveRow("presence-max-meta-bytes", "N", strconv.Itoa(gateway.DefaultPresenceMaxMetaBytes), "largest presence meta of a join (compact JSON); larger: presence_meta_too_large, nothing changes", func(c *engineConfig) *int { return &c.Presence.MaxMeta }),
	positiveRow("presence-max-per-connection", "N", strconv.Itoa(gateway.DefaultPresenceMaxPerConn), "presence subscriptions per connection (so at most this many times --presence-max-meta-bytes of meta); more: presence_limit", func(c *engineConfig) *int { return &c.Presence.MaxPerConn }),
	positiveRow("presence-max-total", "N", strconv.Itoa(gateway.DefaultPresenceMaxTotal), "presence subscriptions in the whole gateway; more: presence_limit", func(c *engineConfig) *int { return &c.Presence.MaxTotal }),
	positiveRow("presence-rate-bytes", "N", strconv.Itoa(gateway.DefaultPresenceRateBytes), "bytes a second of presence frames the gateway sends (each frame counts 64 more); changes past it wait and merge, so that a storm of joins never crowds out stream events", func(c *engineConfig) *int { return &c.Presence.RateBytes }),
	positiveRow("presence-max-total-bytes", "N", strconv.Itoa(gateway.DefaultPresenceMaxTotalBytes), "bytes of presence state in the whole gateway (meta plus 128 per subscription); more: presence_limit", func(c *engineConfig) *int { return &c.Presence.MaxTotalBytes }),
	{"log-level", "LEVEL", "info", "debug, info, warn or error", func(c *engineConfig, v string) error {
		switch strings.ToLower(v) {
		case "debug":
			c.LogLevel = slog.LevelDebug
		case "info":
			c.LogLevel = slog.LevelInfo
		case "warn":
			c.LogLevel = slog.LevelWarn
		case "error":
			c.LogLevel = slog.LevelError
		default:
			return errors.New("must be debug, info, warn or error")
		}
		return nil
	}},
	{"log-format", "FORMAT", "text", "text or json (logs go to stderr)", func(c *engineConfig, v string) error {
		switch v {
		case "text", "json":
			c.LogFormat = v
			return nil
		}
		return errors.New("must be text or json")
	}},
}

// Typed rows: each reads a value into the field that field selects.

// positiveRow is a setting of a positive integer.
func positiveRow(flag, arg, def, usage string, field func(*engineConfig) *int) setting {
	return setting{flag, arg, def, usage, func(c *engineConfig, v string) (err error) {
		*field(c), err = positiveInt(v)
		return err
	}}
}

// positive64Row is a setting of a positive integer held in an int64.
func positive64Row(flag, arg, def, usage string, field func(*engineConfig) *int64) setting {
	return setting{flag, arg, def, usage, func(c *engineConfig, v string) error {
		n, err := positiveInt(v)
		*field(c) = int64(n)
		return err
	}}
}

// durationRow is a setting of a positive duration.
func durationRow(flag, arg, def, usage string, field func(*engineConfig) *time.Duration) setting {
	return setting{flag, arg, def, usage, func(c *engineConfig, v string) (err error) {
		*field(c), err = positiveDuration(v)
		return err
	}}
}

// stringRow is a setting taken as it is.
func stringRow(flag, arg, def, usage string, field func(*engineConfig) *string) setting {
	return setting{flag, arg, def, usage, func(c *engineConfig, v string) error {
		*field(c) = v
		return nil
	}}
}

// addrRow is a listen address, host:port.
func addrRow(flag, arg, def, usage string, field func(*engineConfig) *string) setting {
	return setting{flag, arg, def, usage, func(c *engineConfig, v string) error {
		*field(c) = v
		return checkAddr(v)
	}}
}

// listRow is a comma-separated list.
func listRow(flag, arg, def, usage string, field func(*engineConfig) *[]string) setting {
	return setting{flag, arg, def, usage, func(c *engineConfig, v string) error {
		*field(c) = splitList(v)
		return nil
	}}
}

// onOffRow is a setting of on or off.
func onOffRow(flag, arg, def, usage string, field func(*engineConfig) *bool) setting {
	return setting{flag, arg, def, usage, func(c *engineConfig, v string) error {
		return onOff(v, field(c))
	}}
}
