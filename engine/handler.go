package engine

import (
	"context"
	"time"
)

// Call is one invocation of a registered function. Payload and Metadata are
// opaque JSON bytes to the engine.
type Call struct {
	// FunctionID names the function to run.
	FunctionID string
	// Payload is the function's JSON input (nil means null).
	Payload []byte
	// Metadata is optional JSON passed beside the payload.
	Metadata []byte
	// Traceparent is an optional W3C trace context.
	Traceparent string
	// Baggage is an optional W3C baggage header; engine::baggage::* read
	// the one their call carries.
	Baggage string
	// Timeout bounds the call when the context carries no deadline;
	// zero means Config.DefaultTimeout.
	Timeout time.Duration
	// InvocationID is assigned by the engine; callers leave it empty.
	InvocationID string
	// Grant is the caller's policy decision, when a listener's policy
	// authorized the call (Authorize sets it); nil otherwise. It does not
	// cross engines.
	Grant *Grant
	// CallerID is the worker id of the caller, or "" for other callers.
	CallerID string
	// LocalOnly keeps the call on this engine: set by transports that
	// received it from another engine, so that a call never bounces.
	LocalOnly bool

	// compact says that the engine checked Payload at the edge and found
	// it compact, so that Input copies members without compacting them.
	compact bool
	// held is the session whose calls in flight count this void call
	// until its function returns (Session.CallVoid), heldBytes its
	// count; nil for calls of no session.
	held      *Session
	heldBytes int
}

// Handler runs one function. Handle must return promptly once ctx is done.
type Handler interface {
	Handle(ctx context.Context, c Call) ([]byte, error)
}

// HandlerFunc lets an ordinary function serve as a Handler.
type HandlerFunc func(ctx context.Context, c Call) ([]byte, error)

// Handle calls f(ctx, c).
func (f HandlerFunc) Handle(ctx context.Context, c Call) ([]byte, error) { return f(ctx, c) }
