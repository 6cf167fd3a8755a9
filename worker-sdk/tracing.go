package trine

import (
	"context"
	"reflect"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/tracing"
)

// Tracing: once the application installs an OpenTelemetry TracerProvider
// (otel.SetTracerProvider), the worker makes a client span for each call
// it sends (Trigger, TriggerVoid, Call and the module helpers) and a
// server span for each invocation it serves, a child of the caller's
// trace context carried in the call. Until then it makes none and only
// passes the trace context on.

// unsetProvider is the type of otel's global TracerProvider before an
// application sets one.
var unsetProvider = reflect.TypeOf(otel.GetTracerProvider())

// tracerCache holds the tracer of the global provider it came from.
type tracerCache struct {
	tp trace.TracerProvider
	t  trace.Tracer
}

// tracer is the worker's tracer, nil while no provider is installed.
func (w *Worker) tracer() trace.Tracer {
	tp := otel.GetTracerProvider()
	if reflect.TypeOf(tp) == unsetProvider {
		return nil
	}
	if c := w.tracers.Load(); c != nil && c.tp == tp {
		return c.t
	}
	c := &tracerCache{tp: tp, t: tracing.Tracer(tp)}
	w.tracers.Store(c)
	return c.t
}

// startCall starts the client span of a call of fnID; span is nil when
// tracing is off.
func (w *Worker) startCall(ctx context.Context, fnID string) (context.Context, trace.Span) {
	t := w.tracer()
	if t == nil {
		return ctx, nil
	}
	return t.Start(ctx, fnID, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.SystemTrine, tracing.RPCMethod.String(fnID)))
}

// startServe starts the server span of an invocation, a child of the
// traceparent it carries.
func (w *Worker) startServe(ctx context.Context, info InvocationInfo) (context.Context, trace.Span) {
	t := w.tracer()
	if t == nil {
		return ctx, nil
	}
	return t.Start(tracing.Context(ctx, info.Traceparent), info.FunctionID, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(tracing.SystemTrine, tracing.RPCMethod.String(info.FunctionID), tracing.TrineInvocationID.String(info.ID)))
}

// endSpan ends span (nil: tracing off) with err's code as its outcome.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	var code string
	if err != nil {
		code = string(asError(err).Code)
	}
	tracing.End(span, code)
}
