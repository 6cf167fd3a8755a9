package streammodule

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/streammodule/store"
)

// startCommit starts the span of a write to the store by fn (stream::set,
// update, delete, send), a child of the call's span; span is nil when
// tracing is off. The change the write commits carries the span on to its
// publish (store.Change.Ctx).
func (m *Module) startCommit(ctx context.Context, fn string, k store.Key) (context.Context, trace.Span) {
	if m.tracer == nil {
		return ctx, nil
	}
	return m.tracer.Start(ctx, "commit "+k.Stream, trace.WithAttributes(tracing.TrineFunctionID.String(fn),
		tracing.TrineStream.String(k.Stream), tracing.TrineGroup.String(k.Group)))
}

// endCommit ends the commit span of fn with the group sequence it
// reached, or the code its error gets.
func endCommit(span trace.Span, fn string, seq uint64, err error) {
	if span == nil {
		return
	}
	var code string
	if err != nil {
		span.RecordError(err)
		code = string(engine.AsError(storeError(fn, err)).Code)
	} else {
		span.SetAttributes(tracing.TrineSeq.Int64(int64(seq)))
	}
	tracing.End(span, code)
}

// changeTrace is the span context of the write that committed c.
func (m *Module) changeTrace(c store.Change) trace.SpanContext {
	if m.tracer == nil || c.Ctx == nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(c.Ctx)
}

// startPublish starts the producer span of one event's publish (messaging
// conventions: "send <destination>"), a child of its commit; ctx carries
// it to the Publisher, which puts it in the message's headers.
func (q *publishQueue) startPublish(ev pubEvent) (context.Context, trace.Span) {
	ctx := context.Background()
	if q.tracer == nil || !ev.trace.IsValid() {
		return ctx, nil
	}
	return q.tracer.Start(trace.ContextWithSpanContext(ctx, ev.trace), "send "+ev.stream,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(tracing.SystemNATS, tracing.MessagingOperation.String("send"), tracing.MessagingOperationNm.String("publish"),
			tracing.MessagingDestination.String(ev.stream), tracing.TrineGroup.String(ev.group),
			tracing.TrineSeq.Int64(int64(ev.seq)), tracing.MessagingBodySize.Int(len(ev.frame))))
}

// startTrigger starts the consumer span of stream trigger st's handling
// of one change (messaging conventions: "trigger <stream>", operation
// type process): the child of the commit span that write carries and
// linked to it, as the conventions ask of a span that processes one
// message. The condition's and the function's routing spans are its
// children. ctx is context.Background and span nil when tracing is off or
// the write was not traced.
func (m *Module) startTrigger(st *streamTrigger, write context.Context) (context.Context, trace.Span) {
	ctx := context.Background()
	if m.tracer == nil || write == nil {
		return ctx, nil
	}
	sc := trace.SpanContextFromContext(write)
	if !sc.IsValid() {
		return ctx, nil
	}
	stream := *st.cfg.StreamName
	return m.tracer.Start(trace.ContextWithSpanContext(ctx, sc), "trigger "+stream,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(trace.Link{SpanContext: sc}),
		trace.WithAttributes(tracing.SystemTrine, tracing.MessagingOperation.String("process"), tracing.MessagingOperationNm.String("trigger"),
			tracing.MessagingDestination.String(stream), tracing.TrineTriggerID.String(st.t.ID), tracing.TrineFunctionID.String(st.t.FunctionID)))
}
