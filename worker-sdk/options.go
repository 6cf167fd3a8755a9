package trine

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
)

// Option configures a Worker.
type Option func(*options)

type options struct {
	name, namespace, version string
	concurrency              int
	callTimeout              time.Duration
	closeTimeout             time.Duration
	backoffMin, backoffMax   time.Duration
	keepalive                time.Duration
	logger                   *slog.Logger
	onError                  func(error)
	dialOptions              []grpc.DialOption
	tls                      *tls.Config
	token                    string
}

func defaultOptions() options {
	host, _ := os.Hostname()
	return options{
		name:         fmt.Sprintf("%s:%d", host, os.Getpid()),
		namespace:    "default",
		version:      "dev",
		callTimeout:  30 * time.Second,
		closeTimeout: 10 * time.Second,
		backoffMin:   100 * time.Millisecond,
		backoffMax:   10 * time.Second,
		keepalive:    10 * time.Second,
		logger:       slog.New(slog.DiscardHandler),
	}
}

// WithName names the worker in engine::workers::list. Default "hostname:pid".
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithNamespace sets the worker's namespace. Default "default".
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithVersion sets the version the worker reports. Default "dev".
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithConcurrency caps how many handlers run at once; further invocations
// wait (within their deadline) for a free slot. Zero, the default, means no
// limit.
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// WithCallTimeout bounds Trigger calls whose context has no deadline, and
// registrations. Default 30s.
func WithCallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// WithCloseTimeout bounds how long Close waits for running handlers before
// cancelling their contexts. Default 10s.
func WithCloseTimeout(d time.Duration) Option { return func(o *options) { o.closeTimeout = d } }

// WithReconnectBackoff sets the reconnect delay range: the delay starts at
// min, doubles per failed attempt up to max, with ±20% jitter. Defaults
// 100ms and 10s.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// WithKeepalive sets how long the connection may be idle before the worker
// pings the engine. Default 10s.
func WithKeepalive(d time.Duration) Option { return func(o *options) { o.keepalive = d } }

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithErrorHandler receives errors that have no caller to return to: a
// registration refused when it is replayed after a reconnect.
func WithErrorHandler(f func(error)) Option { return func(o *options) { o.onError = f } }

// WithTLS connects to every engine address over TLS with cfg (its RootCAs
// verify the engine; its Certificates, if any, are the worker's client
// certificate for an engine that requires mTLS). Without it, an address
// written grpcs://host:port or tls://host:port uses TLS with the system's
// roots, and any other is plaintext.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg.Clone() } }

// WithToken sends token with every RPC as "authorization: Bearer
// <token>", for an engine listener whose policy authenticates workers (its
// auth function reads the authorization header). Use it over TLS (WithTLS
// or grpcs://) anywhere but loopback: the token is a password.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithDialOptions adds grpc.DialOptions (interceptors, other credentials…).
// They come after the SDK's own, so transport credentials given here
// replace the ones WithTLS and the address choose.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

func (o *options) validate() error {
	for kind, v := range map[string]string{"worker name": o.name, "namespace": o.namespace} {
		if v == "" || len(v) > 256 || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) {
			return errorf(CodeInvalidArgument, "%s %q must be 1 to 256 bytes of printable UTF-8", kind, v)
		}
	}
	switch {
	case o.concurrency < 0:
		return errorf(CodeInvalidArgument, "concurrency must not be negative")
	case o.callTimeout <= 0, o.closeTimeout <= 0, o.keepalive <= 0:
		return errorf(CodeInvalidArgument, "timeouts must be positive")
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return errorf(CodeInvalidArgument, "reconnect backoff needs 0 < min <= max")
	}
	return nil
}
