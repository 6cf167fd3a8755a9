package natsroute

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/tracing"
)

// WithTracerProvider makes the Router trace each call it sends to another
// engine: a client span (messaging conventions: "send <subject>", system
// nats) whose context travels in the Trine-Traceparent header, so that
// the serving engine's routing span is its child. Call it before Start.
func (r *Router) WithTracerProvider(tp trace.TracerProvider) *Router {
	r.tracer = tracing.Tracer(tp)
	return r
}

// startCall starts the span of c's trip to another engine and makes c
// carry it; span is nil when tracing is off.
func (r *Router) startCall(ctx context.Context, c *engine.Call, subj string) (context.Context, trace.Span) {
	if r.tracer == nil {
		return ctx, nil
	}
	ctx, span := r.tracer.Start(tracing.Context(ctx, c.Traceparent), "send "+subj, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.SystemNATS, tracing.MessagingOperation.String("send"), tracing.MessagingOperationNm.String("request"),
			tracing.MessagingDestination.String(subj), tracing.TrineFunctionID.String(c.FunctionID), tracing.MessagingBodySize.Int(len(c.Payload))))
	c.Traceparent = tracing.Traceparent(span.SpanContext())
	return ctx, span
}

// endCall ends the span of a call sent to another engine.
func endCall(span trace.Span, err error) {
	if span == nil {
		return
	}
	var code string
	if err != nil {
		code = string(engine.AsError(err).Code)
	}
	tracing.End(span, code)
}
