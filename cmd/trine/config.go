package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rs/cors"
	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/internal/origin"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/queuemodule"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
)

// engineConfig is the configuration of `trine engine`, resolved from flags,
// TRINE_* environment variables, an optional YAML file and defaults, in that
// order of precedence.
type engineConfig struct {
	ConfigFile     string
	GRPCAddr       string
	HTTPAddr       string
	DataDir        string
	DefaultTimeout time.Duration
	ShutdownGrace  time.Duration
	// MaxTriggersPerWorker, MaxTriggers and TriggerFireRate bound the
	// triggers connections create (engine.Config).
	MaxTriggersPerWorker, MaxTriggers int
	TriggerFireRate                   float64
	// MaxFunctionsPerWorker, MaxFunctions and the registration byte caps
	// bound what connections register (engine.Config).
	MaxFunctionsPerWorker, MaxFunctions                 int
	MaxRegistrationBytesPerWorker, MaxRegistrationBytes int
	MaxMessageBytes                                     int
	LogLevel                                            slog.Level
	LogFormat                                           string

	IIIAddr           string
	IIINamespaceGrace time.Duration
	IIIAuthFunction   string
	IIIExpose         []string
	IIIMiddleware     string
	Listeners         []listenerConfig                   // extra worker listeners (YAML listeners:)
	Queues            map[string]queuemodule.QueueConfig // named queues (YAML queues:)
	QueueAckWait      time.Duration
	QueueMaxConc      int
	QueueInFlight     int
	QueueInFlightAll  int
	HTTPMaxBodyBytes  int64
	HTTPMaxStreamBody int64
	HTTPTimeout       time.Duration
	HTTPStreaming     bool
	HTTPCORS          corsConfig
	HTTPInvoke        httpInvokeConfig

	Channels channelsConfig

	MaxListBytes      int
	MaxListBytesTotal int

	StreamAddr          string
	EngineAddr          string // trine gateway only
	NATSURL             string
	NATSConnectTimeout  time.Duration
	NATSAddr            string
	NATSToken           string
	NATSTokenGenerated  bool // --nats-token generate: print it at start
	NATSCreds           string
	NATSNKey            string
	NATSTLS             tlsconf.Files // ClientCA: the CA that verifies the NATS servers
	Store               string
	StoreReplicas       int
	StreamHistory       int
	StreamHistoryBytes  int
	StreamHistoryTotal  int
	StreamPublishQueue  int
	StreamMaxItem       int
	StateMaxValue       int
	StreamAuthFunction  string
	StreamJWT           jwtauth.Config
	Console             string // auto or off
	ConsoleTokensFile   string
	AllowedOrigins      []string
	AllowedHosts        []string
	StreamMaxFrame      int64
	StreamQueueMsgs     int
	StreamQueueBytes    int
	StreamCatchUps      int
	StreamCatchUpsTotal int
	StreamSnapshotPage  int
	StreamCoalesce      time.Duration // negative: none
	StreamPing          time.Duration
	StreamSSEKeepAlive  time.Duration
	StreamWriteTimeout  time.Duration

	Presence presenceConfig

	TLS       tlsconf.Files
	EngineTLS tlsconf.Files // trine gateway: its client TLS to the engine (ClientCA: the engine's CA)
}

// setting is one configuration key, known under three names.
type setting struct {
	flag  string // flag name, without dashes; also gives the env and YAML names
	arg   string // placeholder for the value in --help
	def   string
	usage string
	apply func(c *engineConfig, v string) error
}

func (s setting) env() string  { return envName(s.flag) }
func (s setting) yaml() string { return strings.ReplaceAll(s.flag, "-", "_") }

func envName(flagName string) string {
	return "TRINE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// configFlag names the YAML file. It is not itself a YAML key.
const configFlag = "config"

// engineSettings lists every key of `trine engine`, in --help order.
var engineSettings = []setting{
	{"grpc-addr", "ADDR", "127.0.0.1:49134", "gRPC listener for workers and the Trigger RPC", func(c *engineConfig, v string) error {
		c.GRPCAddr = v
		return checkAddr(v)
	}},
	{"http-addr", "ADDR", "127.0.0.1:3111", "HTTP listener: http trigger routes, /healthz, /readyz, /metrics", func(c *engineConfig, v string) error {
		c.HTTPAddr = v
		return checkAddr(v)
	}},
	{"http-max-body-bytes", "N", "1048576", "largest request body an http trigger accepts (413 above), unless its route sets max_body_bytes", func(c *engineConfig, v string) error {
		n, err := positiveInt(v)
		c.HTTPMaxBodyBytes = int64(n)
		return err
	}},
	{"http-max-stream-body-bytes", "N", "1073741824", "the most a route's max_body_bytes may be; a route whose max_body_bytes is over --http-max-body-bytes streams its body to the function through request_body as it arrives", func(c *engineConfig, v string) error {
		n, err := positiveInt(v)
		c.HTTPMaxStreamBody = int64(n)
		return err
	}},
	{"http-timeout", "DURATION", "30s", "deadline of the function behind an http trigger (504 after)", func(c *engineConfig, v string) (err error) {
		c.HTTPTimeout, err = positiveDuration(v)
		return err
	}},
	{"http-streaming", "on|off", "on", "give http trigger functions request_body and response channel refs (iii's http() helper); off saves two channels per request", func(c *engineConfig, v string) error {
		switch v {
		case "on", "off":
			c.HTTPStreaming = v == "on"
			return nil
		}
		return errors.New("must be on or off")
	}},
	{"http-invoke-hosts", "LIST", "*", "host patterns (path.Match: *, *.example.com) that HTTP-invoked functions (iii's registerfunction invocation) may call; empty: such registrations are refused", func(c *engineConfig, v string) error {
		c.HTTPInvoke.Hosts = splitList(v)
		return nil
	}},
	{"http-invoke-allow-http", "on|off", "off", "let HTTP-invoked functions use http:// URLs (off: https only)", func(c *engineConfig, v string) error {
		return onOff(v, &c.HTTPInvoke.AllowHTTP)
	}},
	{"http-invoke-allow-private", "on|off", "off", "let HTTP-invoked functions reach loopback, private and link-local addresses, checked on every connection (the engine's own listeners, on every local address, and 0.0.0.0 and :: stay refused)", func(c *engineConfig, v string) error {
		return onOff(v, &c.HTTPInvoke.AllowPrivate)
	}},
	{"http-invoke-env", "LIST", "", "environment variables an HTTP-invoked function's auth (secret_key, token_key, value_key) may name; others are refused, so a worker cannot make the engine send any other secret", func(c *engineConfig, v string) error {
		c.HTTPInvoke.Env = splitList(v)
		return nil
	}},
	{"http-invoke-max-in-flight", "N", "64", "calls one worker connection's HTTP-invoked functions may have running at once; a further call fails with overloaded", func(c *engineConfig, v string) (err error) {
		c.HTTPInvoke.MaxInFlight, err = positiveInt(v)
		return err
	}},
	{"http-cors-origins", "LIST", "", "comma-separated Origins whose pages may call http triggers from the browser (CORS, preflight answered); * for any; none: no CORS headers", func(c *engineConfig, v string) error {
		c.HTTPCORS.Origins = splitList(v)
		return nil
	}},
	{"http-cors-methods", "LIST", "GET,POST,PUT,PATCH,DELETE", "with --http-cors-origins: the methods allowed", func(c *engineConfig, v string) error {
		c.HTTPCORS.Methods = splitList(v)
		return nil
	}},
	{"http-cors-headers", "LIST", "Content-Type,Authorization", "with --http-cors-origins: the request headers allowed", func(c *engineConfig, v string) error {
		c.HTTPCORS.Headers = splitList(v)
		return nil
	}},
	{"http-cors-credentials", "on|off", "off", "with --http-cors-origins: whether pages may send cookies and HTTP auth (not with *)", func(c *engineConfig, v string) error {
		switch v {
		case "on", "off":
			c.HTTPCORS.Credentials = v == "on"
			return nil
		}
		return errors.New("must be on or off")
	}},
	{"http-cors-max-age", "DURATION", "10m", "with --http-cors-origins: how long browsers may cache a preflight answer", func(c *engineConfig, v string) (err error) {
		c.HTTPCORS.MaxAge, err = positiveDuration(v)
		return err
	}},
	{"iii-addr", "ADDR", "127.0.0.1:49135", "iii worker protocol listener (JSON over WebSocket, for iii SDK workers), with /ws/channels; off: none", func(c *engineConfig, v string) error {
		c.IIIAddr = v
		if v == "off" {
			return nil
		}
		return checkAddr(v)
	}},
	{"iii-namespace-grace", "DURATION", "5s", "how long an iii worker's registrations wait for its engine::workers::register call", func(c *engineConfig, v string) (err error) {
		c.IIINamespaceGrace, err = positiveDuration(v)
		return err
	}},
	{"iii-auth-function", "ID", "", "make the iii listener an RBAC one: this function admits each connection (iii's auth_function_id; fail closed) and its AuthResult limits what the worker may call and register", func(c *engineConfig, v string) error {
		c.IIIAuthFunction = v
		return checkOptionalID("function id", v)
	}},
	{"iii-expose-functions", "PATTERNS", "", "comma-separated patterns of the functions iii workers may call (iii's expose_functions match filters, * anchored); with it or --iii-auth-function, anything not exposed is forbidden", func(c *engineConfig, v string) error {
		c.IIIExpose = splitList(v)
		return nil
	}},
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
	{"default-timeout", "DURATION", "30s", "deadline of calls whose caller sets none", func(c *engineConfig, v string) (err error) {
		c.DefaultTimeout, err = positiveDuration(v)
		return err
	}},
	{"shutdown-grace", "DURATION", "10s", "time in-flight calls get to finish on SIGINT/SIGTERM", func(c *engineConfig, v string) (err error) {
		c.ShutdownGrace, err = positiveDuration(v)
		return err
	}},
	{"max-triggers-per-worker", "N", "1000", "triggers one worker connection may own; more: overloaded", func(c *engineConfig, v string) (err error) {
		c.MaxTriggersPerWorker, err = positiveInt(v)
		return err
	}},
	{"max-triggers", "N", "100000", "triggers all connections together may own; more: overloaded", func(c *engineConfig, v string) (err error) {
		c.MaxTriggers, err = positiveInt(v)
		return err
	}},
	{"max-functions-per-worker", "N", "1000", "functions one worker connection may serve; more: overloaded", func(c *engineConfig, v string) (err error) {
		c.MaxFunctionsPerWorker, err = positiveInt(v)
		return err
	}},
	{"max-functions", "N", "10000", "functions the engine may hold, built-ins included; more: overloaded", func(c *engineConfig, v string) (err error) {
		c.MaxFunctions, err = positiveInt(v)
		return err
	}},
	{"max-registration-bytes-per-worker", "N", "16777216", "bytes one connection's registrations may hold (function ids, descriptions, metadata, schemas; trigger ids, configs, metadata; trigger types); more: overloaded", func(c *engineConfig, v string) (err error) {
		c.MaxRegistrationBytesPerWorker, err = positiveInt(v)
		return err
	}},
	{"max-registration-bytes", "N", "268435456", "bytes all connections' registrations may hold together; more: overloaded", func(c *engineConfig, v string) (err error) {
		c.MaxRegistrationBytes, err = positiveInt(v)
		return err
	}},
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
	{"max-list-bytes", "N", strconv.Itoa(store.DefaultMaxListBytes), "largest answer of a list function (stream::list, list_groups, list_all, state::list, list_groups); one that would be larger is refused with message_too_large before it is built, naming limit and after to page with; lowered to --max-message-bytes less 16 KiB", func(c *engineConfig, v string) (err error) {
		c.MaxListBytes, err = positiveInt(v)
		return err
	}},
	{"max-list-bytes-total", "N", strconv.Itoa(store.DefaultMaxListBytesTotal), "list answers being built at once hold at most this, each counted at --max-list-bytes; more wait for their turn until their deadline (then overloaded)", func(c *engineConfig, v string) (err error) {
		c.MaxListBytesTotal, err = positiveInt(v)
		return err
	}},
	{"channels-max", "N", strconv.Itoa(channels.DefaultMaxChannels), "channels open at once in the engine (engine::channels::create, http trigger streams); more: overloaded", func(c *engineConfig, v string) (err error) {
		c.Channels.Max, err = positiveInt(v)
		return err
	}},
	{"channels-max-per-connection", "N", strconv.Itoa(channels.DefaultMaxConnChannels), "channels one worker connection may have open (every connection may create channels, whatever its policy); more: overloaded; they are removed when it leaves", func(c *engineConfig, v string) (err error) {
		c.Channels.MaxPerConn, err = positiveInt(v)
		return err
	}},
	{"channels-max-bytes-per-connection", "N", strconv.Itoa(channels.DefaultMaxConnBufferBytes), "bytes buffered in the channels of one worker connection, together: past it their writers are not read until readers catch up", func(c *engineConfig, v string) (err error) {
		c.Channels.MaxBytesPerConn, err = positiveInt(v)
		return err
	}},
	{"channels-max-bytes", "N", strconv.Itoa(channels.DefaultMaxTotalBufferBytes), "bytes buffered in all channels of the engine: past it every writer waits until readers catch up", func(c *engineConfig, v string) (err error) {
		c.Channels.MaxBytes, err = positiveInt(v)
		return err
	}},
	{"stream-addr", "ADDR", "127.0.0.1:3112", "stream gateway listener for browsers (WebSocket and SSE)", func(c *engineConfig, v string) error {
		c.StreamAddr = v
		return checkAddr(v)
	}},
	{"tls-cert", "FILE", "", "PEM certificate chain: every listener (gRPC, iii, stream, http) speaks TLS only; reloaded on SIGHUP", func(c *engineConfig, v string) error {
		c.TLS.Cert = v
		return nil
	}},
	{"tls-key", "FILE", "", "PEM private key of --tls-cert", func(c *engineConfig, v string) error {
		c.TLS.Key = v
		return nil
	}},
	{"tls-client-ca", "FILE", "", "PEM CA certificates: the worker listeners (gRPC, iii) require client certificates signed by them (mTLS); reloaded on SIGHUP", func(c *engineConfig, v string) error {
		c.TLS.ClientCA = v
		return nil
	}},
	{"nats-url", "URLS", "", "external NATS servers (comma-separated nats:// URLs); empty: run an embedded server", func(c *engineConfig, v string) error {
		for u := range strings.SplitSeq(v, ",") {
			if u = strings.TrimSpace(u); u != "" && !strings.Contains(u, "://") {
				return fmt.Errorf("%q is not a URL such as nats://host:4222", u)
			}
		}
		c.NATSURL = v
		return nil
	}},
	{"nats-connect-timeout", "DURATION", "30s", "with --nats-url: how long to keep trying at start while no NATS server answers (a cluster starting at the same time); then exit 1", func(c *engineConfig, v string) (err error) {
		c.NATSConnectTimeout, err = positiveDuration(v)
		return err
	}},
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
	{"nats-creds", "FILE", "", "with --nats-url: NATS credentials file (user JWT and NKey seed)", func(c *engineConfig, v string) error {
		c.NATSCreds = v
		return nil
	}},
	{"nats-nkey", "FILE", "", "with --nats-url: NATS NKey seed file", func(c *engineConfig, v string) error {
		c.NATSNKey = v
		return nil
	}},
	{"nats-tls-ca", "FILE", "", "with --nats-url: PEM CA certificates that verify the NATS servers (implies TLS)", func(c *engineConfig, v string) error {
		c.NATSTLS.ClientCA = v
		return nil
	}},
	{"nats-tls-cert", "FILE", "", "with --nats-url: client certificate for NATS servers that verify clients", func(c *engineConfig, v string) error {
		c.NATSTLS.Cert = v
		return nil
	}},
	{"nats-tls-key", "FILE", "", "PEM private key of --nats-tls-cert", func(c *engineConfig, v string) error {
		c.NATSTLS.Key = v
		return nil
	}},
	{"store", "KIND", "file", "stream store: file (durable, in <data-dir>/streams), memory, or jetstream (shared by every engine on the same NATS)", func(c *engineConfig, v string) error {
		switch v {
		case "file", "memory", "jetstream":
			c.Store = v
			return nil
		}
		return errors.New("must be file, memory or jetstream")
	}},
	{"store-replicas", "N", "1", "replicas of the JetStream stream that holds stream items (--store jetstream)", func(c *engineConfig, v string) (err error) {
		c.StoreReplicas, err = positiveInt(v)
		return err
	}},
	{"stream-history", "N", strconv.Itoa(streammodule.DefaultHistorySize), "events kept per group for clients resuming with since", func(c *engineConfig, v string) (err error) {
		c.StreamHistory, err = positiveInt(v)
		return err
	}},
	{"stream-history-bytes", "N", strconv.Itoa(streammodule.DefaultHistoryGroupBytes), "bytes of events kept per group for since (in-memory history; past it the oldest go and clients resync)", func(c *engineConfig, v string) (err error) {
		c.StreamHistoryBytes, err = positiveInt(v)
		return err
	}},
	{"stream-history-total-bytes", "N", strconv.Itoa(streammodule.DefaultHistoryTotalBytes), "bytes of events kept in all groups for since (also the size bound of TRINE_EVENTS with --store jetstream)", func(c *engineConfig, v string) (err error) {
		c.StreamHistoryTotal, err = positiveInt(v)
		return err
	}},
	{"stream-publish-queue-bytes", "N", strconv.Itoa(streammodule.DefaultPublishQueueBytes), "bytes of committed stream events waiting to be published to NATS; writes wait while the queue is full, so no event is lost", func(c *engineConfig, v string) (err error) {
		c.StreamPublishQueue, err = positiveInt(v)
		return err
	}},
	{"stream-max-item-bytes", "N", strconv.Itoa(streammodule.DefaultMaxItemBytes), "largest stream item or event data (compact JSON); lowered to the NATS server's max_payload less 20 KiB, so that every event is published, and to half of --max-message-bytes less 16 KiB, so that every result can be sent", func(c *engineConfig, v string) (err error) {
		c.StreamMaxItem, err = positiveInt(v)
		return err
	}},
	{"state-max-value-bytes", "N", strconv.Itoa(statemodule.DefaultMaxValueBytes), "largest state value (compact JSON); larger ones get VALUE_TOO_LARGE and nothing is written. Lowered to half of the NATS server's max_payload less 12.5 KiB, so that every change's event (old and new value) is published, and to half of --max-message-bytes less 16 KiB", func(c *engineConfig, v string) (err error) {
		c.StateMaxValue, err = positiveInt(v)
		return err
	}},
	{"queue-ack-wait", "DURATION", queuemodule.DefaultAckWait.String(), "how long a queue job may go unacknowledged before JetStream gives it to another engine; the engine running it renews it every third of that, so only a dead engine (kill -9, a lost network) lets it lapse", func(c *engineConfig, v string) (err error) {
		c.QueueAckWait, err = positiveDuration(v)
		return err
	}},
	{"queue-max-concurrency", "N", strconv.Itoa(queuemodule.DefaultMaxConcurrency), "most a durable:subscriber trigger's queue_config.concurrency may ask for (calls of one subscription running at once on this engine); a trigger asking more is refused with INVALID_ARGUMENT", func(c *engineConfig, v string) (err error) {
		c.QueueMaxConc, err = positiveInt(v)
		return err
	}},
	{"queue-inflight-bytes", "N", strconv.Itoa(queuemodule.DefaultInFlightBytes), "bytes of durable-topic messages this engine holds per function (fetched, not yet acknowledged); past it the function's subscriptions fetch nothing more until its calls finish", func(c *engineConfig, v string) (err error) {
		c.QueueInFlight, err = positiveInt(v)
		return err
	}},
	{"queue-inflight-bytes-total", "N", strconv.Itoa(queuemodule.DefaultInFlightBytesTotal), "bytes of durable-topic messages this engine holds for all functions together, whatever their number; a function past its fair share (this divided by the functions subscribed) takes only what no other function is owed, so stalled functions never starve the rest", func(c *engineConfig, v string) (err error) {
		c.QueueInFlightAll, err = positiveInt(v)
		return err
	}},
	{"stream-auth-function", "ID", "", "function that admits stream connections (empty: no auth)", func(c *engineConfig, v string) error {
		if v != "" {
			if err := engine.ValidateID("function id", v); err != nil {
				return errors.New(engine.AsError(err).Message)
			}
		}
		c.StreamAuthFunction = v
		return nil
	}},
	{"stream-jwt-hmac-secret-file", "FILE", "", "admit browsers by HS256/384/512 JSON Web Tokens signed with the secret in FILE (at least 32 bytes), from ?token= or the trine_token cookie; claims become the context", func(c *engineConfig, v string) error {
		c.StreamJWT.HMACSecretFile = v
		return nil
	}},
	{"stream-jwt-public-key-file", "FILE", "", "admit browsers by JSON Web Tokens signed with the private half of the PEM public key in FILE (RSA, ECDSA, Ed25519)", func(c *engineConfig, v string) error {
		c.StreamJWT.PublicKeyFile = v
		return nil
	}},
	{"stream-jwks-url", "URL", "", "admit browsers by JSON Web Tokens signed with a key of this JWKS (fetched at start, every 15m, and on an unknown kid)", func(c *engineConfig, v string) error {
		if v != "" && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
			return errors.New("must be an http(s) URL")
		}
		c.StreamJWT.JWKSURL = v
		return nil
	}},
	{"stream-jwt-audience", "AUD", "", "with JWT admission: the aud claim tokens must carry", func(c *engineConfig, v string) error {
		c.StreamJWT.Audience = v
		return nil
	}},
	{"stream-jwt-issuer", "ISS", "", "with JWT admission: the iss claim tokens must carry", func(c *engineConfig, v string) error {
		c.StreamJWT.Issuer = v
		return nil
	}},
	{"console", "MODE", "auto", "the live console at /console on the HTTP listener: auto serves it to anyone on a loopback --http-addr and elsewhere only with a console token (--console-tokens-file, or a --stream-jwt-* token with \"console\": true); off: not served", func(c *engineConfig, v string) error {
		if v != "auto" && v != "off" {
			return errors.New("want auto or off")
		}
		c.Console = v
		return nil
	}},
	{"console-tokens-file", "FILE", "", "tokens that open the console on any listener: a tokens file (sha256 of each token, as a listener's tokens_file); reloaded on SIGHUP", func(c *engineConfig, v string) error {
		c.ConsoleTokensFile = v
		return nil
	}},
	{"allowed-origins", "LIST", "", "comma-separated browser Origins (scheme://host[:port]) allowed besides same-origin pages and, on a loopback listener, loopback pages (* for any): stream gateway, iii listener, channels", func(c *engineConfig, v string) error {
		c.AllowedOrigins = splitList(v)
		for _, o := range c.AllowedOrigins {
			if err := origin.CheckAllowed(o); err != nil {
				return err
			}
		}
		return nil
	}},
	{"allowed-hosts", "LIST", "", "comma-separated public host names of the browser-facing listeners (stream gateway, iii listener, channels): Host values accepted besides loopback ones, and hosts whose pages are same-origin; a loopback listener accepts only loopback hosts and these (DNS rebinding)", func(c *engineConfig, v string) error {
		c.AllowedHosts = splitList(v)
		return nil
	}},
	{"stream-max-frame-bytes", "N", strconv.Itoa(gateway.DefaultMaxFrameBytes), "largest message a browser may send (larger: close 1009)", func(c *engineConfig, v string) error {
		n, err := positiveInt(v)
		c.StreamMaxFrame = int64(n)
		return err
	}},
	{"stream-queue-messages", "N", strconv.Itoa(gateway.DefaultQueueMessages), "outbound frames queued per connection before it is closed (1008)", func(c *engineConfig, v string) (err error) {
		c.StreamQueueMsgs, err = positiveInt(v)
		return err
	}},
	{"stream-queue-bytes", "N", strconv.Itoa(gateway.DefaultQueueBytes), "outbound bytes queued per connection before it is closed (1008)", func(c *engineConfig, v string) (err error) {
		c.StreamQueueBytes, err = positiveInt(v)
		return err
	}},
	{"stream-max-catchups", "N", strconv.Itoa(gateway.DefaultMaxCatchUps), "snapshots and replays per connection that its writer has not taken yet (more joins wait): what a client that never reads can hold", func(c *engineConfig, v string) (err error) {
		c.StreamCatchUps, err = positiveInt(v)
		return err
	}},
	{"stream-max-catchups-total", "N", strconv.Itoa(gateway.DefaultMaxCatchUpsTotal), "snapshot, page and history reads under way at once in the whole gateway (joins waiting for the same snapshot share one read)", func(c *engineConfig, v string) (err error) {
		c.StreamCatchUpsTotal, err = positiveInt(v)
		return err
	}},
	{"stream-snapshot-page-bytes", "N", strconv.Itoa(gateway.DefaultSnapshotPageBytes), "a group snapshot is read and written in pages of this many bytes (one message in several frames): what one snapshot in flight holds", func(c *engineConfig, v string) (err error) {
		c.StreamSnapshotPage, err = positiveInt(v)
		return err
	}},
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
	{"stream-ping-interval", "DURATION", gateway.DefaultPingInterval.String(), "how often browsers are pinged; silent for two intervals: closed", func(c *engineConfig, v string) (err error) {
		c.StreamPing, err = positiveDuration(v)
		return err
	}},
	{"stream-sse-keepalive", "DURATION", gateway.DefaultSSEKeepAlive.String(), "an SSE stream silent this long gets a keep-alive comment, so clients find a dead one within seconds", func(c *engineConfig, v string) (err error) {
		c.StreamSSEKeepAlive, err = positiveDuration(v)
		return err
	}},
	{"stream-write-timeout", "DURATION", gateway.DefaultWriteTimeout.String(), "longest a write to one browser may block", func(c *engineConfig, v string) (err error) {
		c.StreamWriteTimeout, err = positiveDuration(v)
		return err
	}},
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
	{"presence-replicas", "N", "1", "copies of the presence bucket (TRINE_PRESENCE) in a JetStream cluster", func(c *engineConfig, v string) (err error) {
		c.Presence.Replicas, err = positiveInt(v)
		return err
	}},
	{"presence-max-members", "N", strconv.Itoa(gateway.DefaultPresenceMaxMembers), "past this many members a group's presence subscribers get counts instead of members (pages on request)", func(c *engineConfig, v string) (err error) {
		c.Presence.MaxMembers, err = positiveInt(v)
		return err
	}},
	{"presence-max-meta-bytes", "N", strconv.Itoa(gateway.DefaultPresenceMaxMetaBytes), "largest presence meta of a join (compact JSON); larger: presence_meta_too_large, nothing changes", func(c *engineConfig, v string) (err error) {
		c.Presence.MaxMeta, err = positiveInt(v)
		return err
	}},
	{"presence-max-per-connection", "N", strconv.Itoa(gateway.DefaultPresenceMaxPerConn), "presence subscriptions per connection (so at most this many times --presence-max-meta-bytes of meta); more: presence_limit", func(c *engineConfig, v string) (err error) {
		c.Presence.MaxPerConn, err = positiveInt(v)
		return err
	}},
	{"presence-max-total", "N", strconv.Itoa(gateway.DefaultPresenceMaxTotal), "presence subscriptions in the whole gateway; more: presence_limit", func(c *engineConfig, v string) (err error) {
		c.Presence.MaxTotal, err = positiveInt(v)
		return err
	}},
	{"presence-rate-bytes", "N", strconv.Itoa(gateway.DefaultPresenceRateBytes), "bytes a second of presence frames the gateway sends (each frame counts 64 more); changes past it wait and merge, so that a storm of joins never crowds out stream events", func(c *engineConfig, v string) (err error) {
		c.Presence.RateBytes, err = positiveInt(v)
		return err
	}},
	{"presence-max-total-bytes", "N", strconv.Itoa(gateway.DefaultPresenceMaxTotalBytes), "bytes of presence state in the whole gateway (meta plus 128 per subscription); more: presence_limit", func(c *engineConfig, v string) (err error) {
		c.Presence.MaxTotalBytes, err = positiveInt(v)
		return err
	}},
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

func checkAddr(v string) error {
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return errors.New("must be HOST:PORT (port 0 picks a free port)")
	}
	return nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(v string) []string {
	var out []string
	for o := range strings.SplitSeq(v, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// onOff reads an on|off setting.
func onOff(v string, dst *bool) error {
	switch v {
	case "on", "off":
		*dst = v == "on"
		return nil
	}
	return errors.New("must be on or off")
}

// httpInvokeConfig are the --http-invoke-* settings.
type httpInvokeConfig struct {
	Hosts        []string
	AllowHTTP    bool
	AllowPrivate bool
	Env          []string
	MaxInFlight  int
}

func positiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, errors.New("must be a positive integer")
	}
	return n, nil
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("must be a positive duration such as 500ms, 30s or 2m")
	}
	return d, nil
}

// usageError is a mistake in how the command was invoked (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseEngineConfig resolves the configuration of `trine engine` from args,
// the environment seen through lookupEnv, and the YAML file they name. It
// returns flag.ErrHelp when help was asked for; any other error is a
// *usageError.
func parseEngineConfig(args []string, lookupEnv func(string) (string, bool)) (engineConfig, error) {
	return parseConfig(engineCommand, args, lookupEnv)
}

// command is a subcommand configured through settings.
type command struct {
	name     string // "trine engine"
	settings []setting
	intro    string // --help text before the flags
}

var engineCommand = command{name: "trine engine", settings: engineSettings, intro: `Runs the engine: the gRPC listener for workers and the Trigger RPC, the
HTTP listener for health checks and metrics, the StreamModule with its
store, an embedded NATS server, and the stream gateway for browsers.
SIGINT or SIGTERM drains it and exits 0.`}

// parseConfig resolves cmd's settings from args, the environment and the
// YAML file they name.
func parseConfig(cmd command, args []string, lookupEnv func(string) (string, bool)) (engineConfig, error) {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, help by engineUsage
	fs.Usage = func() {}
	fs.String(configFlag, "", "")
	for _, s := range cmd.settings {
		fs.String(s.flag, s.def, s.usage)
	}
	if err := fs.Parse(bareOnOff(cmd.settings, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return engineConfig{}, err
		}
		return engineConfig{}, usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return engineConfig{}, usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	flags := make(map[string]string)
	fs.Visit(func(f *flag.Flag) { flags[f.Name] = f.Value.String() })
	env := func(name string) (string, bool) {
		v, ok := lookupEnv(name)
		return v, ok && v != "" // an empty variable counts as unset
	}

	var c engineConfig
	for _, s := range cmd.settings {
		if err := s.apply(&c, s.def); err != nil {
			panic("trine: bad default for " + s.flag) // a bug in engineSettings
		}
	}
	if v, ok := flags[configFlag]; ok {
		c.ConfigFile = v
	} else if v, ok := env(envName(configFlag)); ok {
		c.ConfigFile = v
	}
	if c.ConfigFile != "" {
		if err := loadConfigFile(&c, cmd.settings, c.ConfigFile, env); err != nil {
			return engineConfig{}, err
		}
	}
	for _, s := range cmd.settings {
		if v, ok := env(s.env()); ok {
			if err := s.apply(&c, v); err != nil {
				return engineConfig{}, usageErrorf("invalid %s %q: %v", s.env(), v, err)
			}
		}
		if v, ok := flags[s.flag]; ok {
			if err := s.apply(&c, v); err != nil {
				return engineConfig{}, usageErrorf("invalid --%s %q: %v", s.flag, v, err)
			}
		}
	}
	if err := c.TLS.Check(); err != nil {
		return engineConfig{}, usageErrorf("%v", err)
	}
	if c.HTTPCORS.Credentials && slices.Contains(c.HTTPCORS.Origins, "*") {
		return engineConfig{}, usageErrorf("--http-cors-credentials on cannot go with --http-cors-origins '*': name the origins")
	}
	return c, nil
}

// bareOnOff rewrites each on|off flag of args given without a value
// (--http-invoke-allow-http, followed by another flag or nothing) as
// --flag=on, as Go's flag package reads a bare boolean flag; --flag on,
// --flag off and --flag=VALUE are kept.
func bareOnOff(settings []setting, args []string) []string {
	kinds := map[string]string{configFlag: "FILE"}
	for _, s := range settings {
		kinds[s.flag] = s.arg
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...) // flags end here
		}
		out = append(out, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		kind, known := kinds[name]
		switch {
		case !known: // --name=VALUE, or a mistake the flag package reports
		case kind == "on|off" && (i+1 == len(args) || strings.HasPrefix(args[i+1], "-")):
			out[len(out)-1] = a + "=on"
		case i+1 < len(args):
			i++ // the flag's value, whatever it looks like
			out = append(out, args[i])
		}
	}
	return out
}

// loadConfigFile applies the YAML file at path to c. Variables in the file
// are expanded (see expandVars) before it is parsed.
func loadConfigFile(c *engineConfig, settings []setting, path string, env func(string) (string, bool)) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return usageErrorf("read config: %v", err)
	}
	text, err := expandVars(string(raw), env)
	if err != nil {
		return usageErrorf("config %s: %v", path, err)
	}
	var doc map[string]yaml.Node
	if err := yaml.NewDecoder(strings.NewReader(text)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return usageErrorf("config %s: %s", path, oneLine(err.Error()))
	}
	byKey := make(map[string]setting, len(settings))
	for _, s := range settings {
		byKey[s.yaml()] = s
	}
	// Apply in file order so that the first mistake is the one reported.
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return doc[a].Line - doc[b].Line })
	for _, k := range keys {
		n := doc[k]
		if _, ok := byKey["iii_addr"]; ok && k == "listeners" { // trine engine only
			ls, err := decodeListeners(&n)
			if err != nil {
				return usageErrorf("config %s: line %d: listeners: %v", path, n.Line, err)
			}
			c.Listeners = ls
			continue
		}
		if _, ok := byKey["iii_addr"]; ok && k == "queues" { // trine engine only
			qs, err := decodeQueues(&n)
			if err != nil {
				return usageErrorf("config %s: line %d: queues: %v", path, n.Line, err)
			}
			c.Queues = qs
			continue
		}
		s, ok := byKey[k]
		if !ok {
			return usageErrorf("config %s: line %d: unknown key %q (known keys: %s)", path, n.Line, k, knownKeys(settings))
		}
		if n.Kind != yaml.ScalarNode {
			return usageErrorf("config %s: line %d: %s must be a single value", path, n.Line, k)
		}
		v := n.Value
		if n.Tag == "!!null" {
			v = ""
		}
		if err := s.apply(c, v); err != nil {
			return usageErrorf("config %s: line %d: invalid %s %q: %v", path, n.Line, k, v, err)
		}
	}
	return nil
}

func knownKeys(settings []setting) string {
	names := make([]string, 0, len(settings)+2)
	for _, s := range settings {
		names = append(names, s.yaml())
		if s.flag == "iii-addr" { // trine engine only
			names = append(names, "listeners", "queues")
		}
	}
	return strings.Join(names, ", ")
}

// oneLine joins a multi-line message (yaml.v3 lists several errors on
// separate lines) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// expandVars replaces ${VAR} with the value of VAR (empty if unset) and
// ${VAR:default} with the value of VAR, or default when VAR is unset or
// empty. A "$" not followed by "{" is kept as is.
func expandVars(s string, env func(string) (string, bool)) (string, error) {
	var b strings.Builder
	line := 1
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		line += strings.Count(s[:i], "\n")
		b.WriteString(s[:i])
		s = s[i+2:]
		end := strings.IndexAny(s, "}\n")
		if end < 0 || s[end] != '}' {
			return "", fmt.Errorf("line %d: unterminated ${", line)
		}
		name, def, hasDef := strings.Cut(s[:end], ":")
		if !validVarName(name) {
			return "", fmt.Errorf("line %d: invalid variable name %q in ${%s}", line, name, s[:end])
		}
		v, ok := env(name)
		if (!ok || v == "") && hasDef {
			v = def
		}
		b.WriteString(v)
		s = s[end+1:]
	}
}

func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// engineUsage writes the help of `trine engine`: every key with its flag,
// environment variable, YAML key and default.
func engineUsage(w io.Writer) { commandUsage(w, engineCommand) }

// commandUsage writes the help of cmd: every key with its flag, environment
// variable, YAML key and default.
func commandUsage(w io.Writer, cmd command) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Usage: %s [flags]\n\n%s\n\n", cmd.name, cmd.intro)
	b.WriteString(`Every setting comes from a flag, a TRINE_* environment variable, or the YAML
file named by --config; a flag beats the environment, which beats the file,
which beats the default. An empty environment variable counts as unset.

Flags:
`)
	fmt.Fprintf(&b, "  --%s FILE\n      YAML configuration file (env %s). Unknown keys are an error.\n", configFlag, envName(configFlag))
	b.WriteString("      ${VAR} and ${VAR:default} are expanded before parsing; the default\n")
	b.WriteString("      applies when VAR is unset or empty.\n")
	for _, s := range cmd.settings {
		fmt.Fprintf(&b, "  --%s %s\n      %s\n      env %s, yaml %s, default %s\n", s.flag, s.arg, s.usage, s.env(), s.yaml(), s.def)
	}
	b.WriteString("\nExample YAML:\n")
	for _, s := range cmd.settings {
		fmt.Fprintf(&b, "  %s: %s\n", s.yaml(), yamlExample(s))
	}
	_, _ = w.Write(b.Bytes())
}

func yamlExample(s setting) string {
	switch s.flag {
	case "grpc-addr":
		return `"${GRPC_ADDR:` + s.def + `}"`
	case "stream-auth-function", "allowed-origins", "allowed-hosts", "nats-url", "tls-cert", "tls-key", "tls-client-ca", "http-cors-origins",
		"iii-auth-function", "iii-expose-functions", "iii-middleware-function",
		"stream-jwt-hmac-secret-file", "stream-jwt-public-key-file", "stream-jwks-url", "stream-jwt-audience", "stream-jwt-issuer", "console-tokens-file",
		"nats-token", "nats-creds", "nats-nkey", "nats-tls-ca", "nats-tls-cert", "nats-tls-key",
		"engine-tls-ca", "engine-tls-cert", "engine-tls-key":
		return `""`
	case "http-addr", "data-dir", "stream-addr", "nats-addr", "engine", "iii-addr":
		return `"` + s.def + `"`
	}
	return s.def
}

// checkOptionalID checks v as an id when it is set.
func checkOptionalID(kind, v string) error {
	if v == "" {
		return nil
	}
	return engine.ValidateID(kind, v)
}

// channelsConfig bounds the engine's data channels.
type channelsConfig struct {
	Max, MaxPerConn, MaxBytesPerConn, MaxBytes int
}

// hubConfig is the channels.Config of these bounds.
func (c channelsConfig) hubConfig() channels.Config {
	return channels.Config{MaxChannels: c.Max, MaxConnChannels: c.MaxPerConn,
		MaxConnBufferBytes: int64(c.MaxBytesPerConn), MaxTotalBufferBytes: int64(c.MaxBytes)}
}

// corsConfig is the http listener's CORS.
type corsConfig struct {
	Origins, Methods, Headers []string
	Credentials               bool
	MaxAge                    time.Duration
}

// wrap adds CORS to h when origins are set (rs/cors answers preflights).
func (c corsConfig) wrap(h http.Handler) http.Handler {
	if len(c.Origins) == 0 {
		return h
	}
	return cors.New(cors.Options{AllowedOrigins: c.Origins, AllowedMethods: c.Methods, AllowedHeaders: c.Headers,
		AllowCredentials: c.Credentials, MaxAge: int(c.MaxAge / time.Second)}).Handler(h)
}
