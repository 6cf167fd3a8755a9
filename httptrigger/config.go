package httptrigger

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/defaults"
)

// Defaults applied to a zero Config.
const (
	DefaultMaxBodyBytes int64 = 1 << 20
	// DefaultMaxStreamBodyBytes is the default ceiling of a route's
	// max_body_bytes.
	DefaultMaxStreamBodyBytes int64 = 1 << 30
	DefaultTimeout                  = 30 * time.Second
)

// Config tunes a Provider. The zero Config is valid.
type Config struct {
	// MaxBodyBytes limits a request body; a larger one is answered 413.
	// Default 1 MiB (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxStreamBodyBytes is the most a route's max_body_bytes may be. A
	// route whose max_body_bytes is over MaxBodyBytes streams its body:
	// the function reads it from request_body while it arrives (Channels
	// required) and "body" is null. Default 1 GiB.
	MaxStreamBodyBytes int64
	// Timeout bounds each request from the moment its handling starts:
	// receiving the body (408 when it runs out), calling the condition
	// and trigger functions (504), and a streamed response (504 before its
	// header, a cut-off response after). Default 30s (DefaultTimeout).
	Timeout time.Duration
	// Reserved lists paths owned by the server (e.g. "/healthz"); a route
	// equal to one of them is refused with conflict. Default none.
	Reserved []string
	// Channels, if set, gives every call of a trigger's function a data
	// channel carrying the raw request body ("request_body") and one into
	// which it may stream its response ("response"); see the package doc.
	// Default nil: no channels, and a function must return its response.
	Channels Channels
	// Logger receives per-request debug logs and route changes. Default:
	// discard.
	Logger *slog.Logger
	// TracerProvider, if set, traces each request: a server span, the
	// child of the request's traceparent header when it has one, under
	// which the route's functions run. Default: none.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	defaults.Positive(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	defaults.Positive(&c.MaxStreamBodyBytes, DefaultMaxStreamBodyBytes)
	defaults.Positive(&c.Timeout, DefaultTimeout)
	defaults.Logger(&c.Logger)
	return c
}
