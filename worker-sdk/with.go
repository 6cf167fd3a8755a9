package trine

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Every option is a WithX function. One option may configure several
// things (WithLogger configures a Worker and a Subscription; WithItem a
// Send and a Subscribe), so each kind of option is an interface and an
// option value implements each kind it applies to, as in the OpenTelemetry
// Go API. A nil option is ignored wherever options are taken; a value that
// holds no option (a type embedding a nil one) is refused with
// invalid_argument, and nothing is done.

// applyOptions applies each option of opts that is not nil to o, in
// order, and returns o. An option that holds none (a value of a type
// embedding a nil option) is refused with invalid_argument.
func applyOptions[O any, F comparable](o O, opts []F, apply func(F, *O)) (O, error) {
	var none F
	for i, f := range opts {
		if f == none {
			continue
		}
		if err := applyOne(i, f, func() { apply(f, &o) }); err != nil {
			return o, err
		}
	}
	return o, nil
}

// applyOne runs apply, the application of option i, f; an option that
// holds none panics there, and is refused.
func applyOne(i int, f any, apply func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errorf(CodeInvalidArgument, "option %d (%T) is empty: %v", i+1, f, p)
		}
	}()
	apply()
	return nil
}

// Option configures a Worker (RegisterWorker).
type Option interface{ applyWorker(*options) }

// SubscribeOption configures Subscribe.
type SubscribeOption interface{ applySubscribe(*subscribeOptions) }

// ClientOption configures both a Worker and a Subscription.
type ClientOption interface {
	Option
	SubscribeOption
}

// FunctionOption configures RegisterFunction and RegisterFunctionTyped.
type FunctionOption interface{ applyFunction(*function) }

// WriteOption configures Set, Update and Delete of streams and state.
type WriteOption interface{ applyWrite(*writeOptions) }

// ListOption configures List of streams and state.
type ListOption interface{ applyList(*listOptions) }

// SendOption configures Stream.Send.
type SendOption interface{ applySend(*sendOptions) }

// ItemOption addresses one item: it configures Stream.Send and Subscribe.
type ItemOption interface {
	SendOption
	SubscribeOption
}

type workerOption func(*options)

func (f workerOption) applyWorker(o *options) { f(o) }

type subscribeOption func(*subscribeOptions)

func (f subscribeOption) applySubscribe(o *subscribeOptions) { f(o) }

type clientOption struct {
	worker func(*options)
	sub    func(*subscribeOptions)
}

func (c clientOption) applyWorker(o *options)             { c.worker(o) }
func (c clientOption) applySubscribe(o *subscribeOptions) { c.sub(o) }

type functionOption func(*function)

func (f functionOption) applyFunction(fn *function) { f(fn) }

type writeOption func(*writeOptions)

func (f writeOption) applyWrite(o *writeOptions) { f(o) }

type listOption func(*listOptions)

func (f listOption) applyList(o *listOptions) { f(o) }

type itemOption string

func (id itemOption) applySend(o *sendOptions)           { s := string(id); o.id = &s }
func (id itemOption) applySubscribe(o *subscribeOptions) { o.item = string(id) }

// Options shared by a Worker and a Subscription.

// WithLogger sets the logger. Default: text to stderr at level warn
// (an engine or gateway that cannot be reached, a lost connection,
// handlers still running at close); nil logs nothing.
func WithLogger(l *slog.Logger) ClientOption {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return clientOption{func(o *options) { o.logger = l }, func(o *subscribeOptions) { o.logger = l }}
}

// WithReconnectBackoff sets the reconnect delay range: the delay starts at
// min, doubles per failed attempt up to max, with ±20% jitter. Defaults
// 100ms and 10s.
func WithReconnectBackoff(min, max time.Duration) ClientOption {
	return clientOption{
		func(o *options) { o.backoffMin, o.backoffMax = min, max },
		func(o *subscribeOptions) { o.backoffMin, o.backoffMax = min, max },
	}
}

// WithTLS uses TLS with cfg: its RootCAs verify the server, and its
// Certificates, if any, are the client certificate for a server that
// requires mTLS. A Worker uses it for every engine address; without it,
// an address written grpcs://host:port or tls://host:port uses TLS with
// the system's roots, and any other is plaintext. A Subscription uses it
// for wss:// (https://) gateways unless WithHTTPClient gives a client of
// its own.
func WithTLS(cfg *tls.Config) ClientOption {
	return clientOption{
		func(o *options) { o.tls = cfg.Clone() },
		func(o *subscribeOptions) { o.tls = cfg.Clone() },
	}
}

// WithToken sends a credential. A Worker sends it with every RPC as
// "authorization: Bearer <token>", for an engine listener whose policy
// authenticates workers (its auth function reads the authorization
// header). A Subscription sends it as the trine_token cookie, which the
// gateway verifies as a JWT (or hands to its auth function); a cookie
// stays out of URLs and access logs, unlike ?token=. It must be a valid
// cookie value (a JWT is): Subscribe refuses one with spaces, quotes,
// commas, semicolons, backslashes or non-ASCII. Use it over TLS
// anywhere but loopback: the token is a password.
func WithToken(token string) ClientOption {
	return clientOption{func(o *options) { o.token = token }, func(o *subscribeOptions) { o.token = token }}
}

// WithHeader adds headers. A Worker sends them as gRPC metadata with every
// RPC (keys lower-cased; an engine's auth function sees them as headers),
// at most MaxHeaderBytes of them with the token; a Subscription sends them
// with every handshake.
func WithHeader(h http.Header) ClientOption {
	return clientOption{func(o *options) { addAll(h, o.header.Add) }, func(o *subscribeOptions) { addAll(h, o.header.Add) }}
}

// addAll adds every value of src with add.
func addAll(src map[string][]string, add func(k, v string)) {
	for k, vs := range src {
		for _, v := range vs {
			add(k, v)
		}
	}
}

// Worker options.

// WithName names the worker in engine::workers::list. Default "hostname:pid".
func WithName(name string) Option { return workerOption(func(o *options) { o.name = name }) }

// WithNamespace sets the worker's namespace. Default "default".
func WithNamespace(ns string) Option { return workerOption(func(o *options) { o.namespace = ns }) }

// WithVersion sets the version the worker reports. Default "dev".
func WithVersion(v string) Option { return workerOption(func(o *options) { o.version = v }) }

// WithConcurrency caps how many handlers run at once; further invocations
// wait (within their deadline) for a free slot. Zero, the default, means no
// limit.
func WithConcurrency(n int) Option { return workerOption(func(o *options) { o.concurrency = n }) }

// WithCallTimeout bounds Trigger calls whose context has no deadline, and
// registrations. Default 30s.
func WithCallTimeout(d time.Duration) Option {
	return workerOption(func(o *options) { o.callTimeout = d })
}

// WithCloseTimeout bounds how long Close waits for running handlers before
// cancelling their contexts. Default 10s.
func WithCloseTimeout(d time.Duration) Option {
	return workerOption(func(o *options) { o.closeTimeout = d })
}

// WithKeepalive sets how long the connection may be idle before the worker
// pings the engine. Default 10s.
func WithKeepalive(d time.Duration) Option {
	return workerOption(func(o *options) { o.keepalive = d })
}

// WithErrorHandler receives errors that have no caller to return to: a
// registration refused when it is replayed after a reconnect.
func WithErrorHandler(f func(error)) Option { return workerOption(func(o *options) { o.onError = f }) }

// WithDialer makes the worker's connections with dial instead of TCP (a
// Unix socket, a proxy, an in-memory listener in tests). addr is the
// engine address without its scheme. TLS, if any, runs over the
// connection dial returns.
func WithDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return workerOption(func(o *options) { o.dialer = dial })
}

// Function options.

// WithDescription describes the function in engine::functions::list.
func WithDescription(d string) FunctionOption {
	return functionOption(func(f *function) { f.description = d })
}

// WithMetadata attaches metadata to the function (any JSON value); a
// listener's expose_functions metadata filters match it, and
// engine::functions::info shows it. It must marshal to JSON.
func WithMetadata(md any) FunctionOption {
	return functionOption(func(f *function) { f.setJSON(&f.metadata, "metadata", md) })
}

// WithRequestFormat declares the JSON Schema (draft 2020-12) of the
// function's input (iii's request_format): a json.RawMessage, a string of
// JSON, or a value that marshals to the schema. The engine refuses the
// registration if the schema does not compile, refuses every call whose
// payload breaks it with invalid_argument before the handler runs, and
// shows it in engine::functions::info.
func WithRequestFormat(schema any) FunctionOption {
	return functionOption(func(f *function) { f.setJSON(&f.requestFormat, "request format", schema) })
}

// WithResponseFormat declares the JSON Schema of the function's result
// (iii's response_format), as WithRequestFormat does for its input: a
// result that breaks it reaches the caller as handler_error.
func WithResponseFormat(schema any) FunctionOption {
	return functionOption(func(f *function) { f.setJSON(&f.responseFormat, "response format", schema) })
}

// WithTypedFormats makes RegisterFunctionTyped declare SchemaFor[In] as the
// request format and SchemaFor[Out] as the response format (a format given
// with WithRequestFormat or WithResponseFormat wins), so that the engine
// holds callers and the handler to the Go types. With RegisterFunction,
// which has no types, the registration is refused.
func WithTypedFormats() FunctionOption {
	return functionOption(func(f *function) { f.wantTyped = true })
}

// WithoutValidation keeps the function's formats for
// engine::functions::info only: the engine checks no payload or result
// against them, and stores them without compiling them (a schema of an
// older draft can be shown this way).
func WithoutValidation() FunctionOption {
	return functionOption(func(f *function) { f.noValidation = true })
}

// setSchema sets dst to the schema derive returns; a failure is kept for
// RegisterFunction to return.
func (f *function) setSchema(dst *[]byte, what string, derive func() (json.RawMessage, error)) {
	s, err := derive()
	if err != nil {
		f.err = errors.Join(f.err, fmt.Errorf("%s: %v", what, err))
		return
	}
	*dst = s
}

// setJSON encodes an option's JSON value into dst (a string is taken as
// JSON text); a failure is kept for RegisterFunction to return.
func (f *function) setJSON(dst *[]byte, what string, v any) {
	if s, ok := v.(string); ok {
		v = json.RawMessage(s)
	}
	b, err := marshal(v)
	if err != nil {
		f.err = errors.Join(f.err, fmt.Errorf("%s: %v", what, err))
		return
	}
	*dst = b
}

// Write and list options.

// WithIfSeq makes a write conditional: it happens only if the item's
// sequence is seq (0: the item must not exist); otherwise it fails with
// code conflict and changes nothing.
func WithIfSeq(seq uint64) WriteOption {
	return writeOption(func(o *writeOptions) { o.ifSeq = &seq })
}

// WithLimit returns at most n items per page; 0 means all of them.
func WithLimit(n int) ListOption { return listOption(func(o *listOptions) { o.limit = &n }) }

// WithAfter starts the page after the item id (in byte order of ids).
func WithAfter(id string) ListOption { return listOption(func(o *listOptions) { o.after = &id }) }

// WithItem addresses one item of the group: Send sends the event to its
// subscribers only, and Subscribe watches only it (?item_id=).
func WithItem(id string) ItemOption { return itemOption(id) }

// Subscribe options.

// WithSince starts a subscription after the group sequence seq instead of
// with a snapshot; the gateway sends a resync snapshot if its history no
// longer reaches back that far.
func WithSince(seq uint64) SubscribeOption {
	return subscribeOption(func(o *subscribeOptions) { o.since, o.hasSince = seq, true })
}

// WithQuery adds query parameters to every handshake. The client sets
// since and item_id itself.
func WithQuery(q url.Values) SubscribeOption {
	return subscribeOption(func(o *subscribeOptions) { addAll(q, o.query.Add) })
}

// WithBuffer sets the capacity of the Events channel. Default
// DefaultSubscribeBuffer. When it is full the client stops reading, and
// the gateway may drop the connection; the client then resumes.
func WithBuffer(n int) SubscribeOption {
	return subscribeOption(func(o *subscribeOptions) { o.buffer = n })
}

// WithReadLimit bounds one frame; a larger one ends the subscription with
// code message_too_large. Default DefaultSubscribeReadLimit.
func WithReadLimit(n int64) SubscribeOption {
	return subscribeOption(func(o *subscribeOptions) { o.readLimit = n })
}

// WithIdleTimeout drops and resumes a connection on which nothing, not
// even a ping, arrived for d while the client was reading. Zero, the
// default, disables it; about twice the gateway's ping interval (25s by
// default) suits.
func WithIdleTimeout(d time.Duration) SubscribeOption {
	return subscribeOption(func(o *subscribeOptions) { o.idleTimeout = d })
}

// WithHTTPClient makes the handshakes with c (its transport, proxy and
// TLS settings). Default: a client of its own, with WithTLS's config.
func WithHTTPClient(c *http.Client) SubscribeOption {
	return subscribeOption(func(o *subscribeOptions) { o.httpClient = c })
}
