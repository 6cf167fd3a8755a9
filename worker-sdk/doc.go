// Package trine is the Go worker SDK for the Trine engine (folder worker-sdk,
// package trine): a worker connects to the engine over gRPC, registers
// functions and triggers, and calls any function by id.
//
//	w, err := trine.NewWorker(addr, trine.WithName("math"))
//	if err != nil { ... }
//	defer w.Close()
//	if err := w.Connect(ctx); err != nil { ... }
//	_ = w.RegisterFunction(ctx, "math::add", func(ctx context.Context, in json.RawMessage) (any, error) { ... })
//	sum, _ := w.Trigger(ctx, "math::add", map[string]any{"a": 1, "b": 2})
//
// (Example is the whole program; a test checks that every line above
// stands in it, so that the two cannot part.) NewWorker refuses a malformed address or
// option at once, the way nats.Connect does.
//
// The worker connects in the background and reconnects forever with
// exponential backoff and jitter. Registrations are kept in memory and
// replayed on every new connection; the engine acknowledges each one, and a
// refusal reaches the caller of Register* (or, for a replay, the
// WithErrorHandler callback).
//
// Failures are *Error values with a stable Code; errors.Is(err,
// trine.ErrFunctionNotFound) and errors.As(err, &*trine.Error) both work.
//
// Once the application installs an OpenTelemetry TracerProvider
// (otel.SetTracerProvider), calls are client spans and invocations server
// spans in the caller's trace; until then the worker makes none and passes
// the trace context on.
//
// Concurrency: all methods of *Worker are safe for concurrent use. Each
// invocation runs its handler on its own goroutine (bounded by
// WithConcurrency); a handler panic becomes a handler_error result and the
// worker keeps running. Close stops taking calls, lets running handlers
// finish within WithCloseTimeout, and returns once every goroutine the worker
// started has exited.
package trine
