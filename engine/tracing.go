package engine

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/internal/tracing"
)

// traceCall starts the span of routing c (RPC conventions: named after
// the function, rpc.system "trine"), a child of ctx's span or else of
// vetTraceContext bounds the trace context a call carries on (to
// workers, over NATS, into queued jobs), tracing on or off: a traceparent
// that is not W3C's is dropped, as W3C says, and one of a later version
// is cut to the fields this one knows; baggage over W3C's 8,192 bytes is
// refused with invalid_argument.
func vetTraceContext(c *Call) error {
	if len(c.Baggage) > maxBaggageBytes {
		return Errorf(codes.InvalidArgument, "the baggage of the call of %q is %d bytes, the limit is %d", c.FunctionID, len(c.Baggage), maxBaggageBytes)
	}
	if c.Traceparent != "" {
		sc := tracing.Parse(c.Traceparent)
		switch {
		case !sc.IsValid():
			c.Traceparent = ""
		case len(c.Traceparent) != 55:
			c.Traceparent = tracing.Traceparent(sc)
		}
	}
	return nil
}

// the traceparent c carries, and makes c carry the new span on, so that
// the worker, the engine and the module that run it continue the trace.
// It is only called when tracing is on.
func (e *Engine) traceCall(ctx context.Context, c *Call) (context.Context, trace.Span) {
	ctx, span := e.tracer.Start(tracing.Context(ctx, c.Traceparent), c.FunctionID,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(tracing.SystemTrine, tracing.RPCMethod.String(c.FunctionID)))
	if tp := tracing.Traceparent(span.SpanContext()); tp != "" {
		c.Traceparent = tp
	}
	return ctx, span
}

// endCall ends the span of a call with its outcome.
func endCall(span trace.Span, c Call, err error) {
	if c.InvocationID != "" {
		span.SetAttributes(tracing.TrineInvocationID.String(c.InvocationID))
	}
	var code Code
	if err != nil {
		code = AsError(err).Code
	}
	tracing.End(span, string(code))
}
