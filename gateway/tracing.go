package gateway

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/tracing"
)

// TracedEvents is Events whose events carry the trace context of their
// publish (natsfanout.Subscriber). With Config.TracerProvider set, the
// gateway subscribes through it and makes a span per event it delivers.
type TracedEvents interface {
	SubscribeTraced(stream, group string, h func(frame []byte, traceparent string)) (cancel func(), err error)
}

// subscribeEvents subscribes hg to its group's events, traced when the
// gateway traces and its Events can.
func (h *hub) subscribeEvents(hg *hubGroup) (cancel func(), err error) {
	ev := h.g.cfg.Events
	if te, ok := ev.(TracedEvents); ok && h.g.tracer != nil {
		tracer := h.g.tracer
		return te.SubscribeTraced(hg.key.stream, hg.key.group, func(frame []byte, traceparent string) {
			hg.deliverTraced(tracer, frame, traceparent)
		})
	}
	return ev.Subscribe(hg.key.stream, hg.key.group, func(frame []byte) { hg.deliver(frame) })
}

// deliverTraced delivers one event under a consumer span (messaging
// conventions: "process <stream>"), a child of the event's publish and
// linked to it, with the number of local subscribers it is offered to.
// An event published without a trace context makes no span.
func (hg *hubGroup) deliverTraced(tracer trace.Tracer, frame []byte, traceparent string) {
	parent := tracing.Parse(traceparent)
	if !parent.IsValid() {
		hg.deliver(frame)
		return
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)
	_, span := tracer.Start(ctx, "process "+hg.key.stream, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.Link{SpanContext: parent}),
		trace.WithAttributes(tracing.SystemNATS, tracing.MessagingOperation.String("process"), tracing.MessagingOperationNm.String("deliver"),
			tracing.MessagingDestination.String(hg.key.stream), tracing.TrineGroup.String(hg.key.group), tracing.MessagingBodySize.Int(len(frame))))
	n := hg.deliver(frame)
	span.SetAttributes(tracing.TrineSubscriberCount.Int(n))
	tracing.End(span, "")
}
