package gateway_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlptest"
	"github.com/trinehq/trine/streammodule"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestTraceWorkerWriteToSocket: a Go worker's stream::set, through the
// engine, the store, the NATS publish and two gateways, to WebSocket
// subscribers, is one trace: the SDK's client span, the engine's routing
// span, the store commit, the publish (a producer span whose context
// travels in the NATS headers) and one delivery span per gateway (a
// consumer span with its subscriber count), each the child of the one
// before. (It installs the global TracerProvider for the SDK, so it is
// not parallel.)
func TestTraceWorkerWriteToSocket(t *testing.T) {
	tp, rec := otlptest.NewRecorder(t)
	otel.SetTracerProvider(tp)
	s := newStack(t, gateway.Config{TracerProvider: tp}, streammodule.Config{TracerProvider: tp})
	s2 := s.gateway(t, gateway.Config{TracerProvider: tp})
	addr := enginetest.ServeGRPC(t, s.e, grpcserver.Config{})
	w := trine.RegisterWorker(addr)
	t.Cleanup(func() { _ = w.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	a, b := s.dial(t, groupPath("chat", "room", "id=a"), nil), s.dial(t, groupPath("chat", "room", "id=b"), nil)
	c := s2.dial(t, groupPath("chat", "room"), nil)
	for _, cl := range []*client{a, b, c} {
		if f := cl.read(); f.kind() != "sync" {
			t.Fatalf("first frame %s", f.Raw)
		}
	}
	ctx, root := tp.Tracer("test").Start(ctx, "root")
	if _, err := w.Trigger(ctx, streammodule.FnSet, map[string]any{"stream_name": "chat", "group_id": "room", "item_id": "m1", "data": "hi"}); err != nil {
		t.Fatal(err)
	}
	root.End()
	for _, cl := range []*client{a, b, c} {
		if f := cl.read(); f.kind() != "create" {
			t.Fatalf("frame %s, want the create", f.Raw)
		}
	}
	tid := root.SpanContext().TraceID()
	var spans []sdktrace.ReadOnlySpan
	poll.CheckFor(t, 10*time.Second, poll.Holds("two delivery spans", func() bool {
		spans = spans[:0]
		n := 0
		for _, sp := range rec.Ended() {
			if sp.Name() == "process chat" {
				n++
			}
			spans = append(spans, sp)
		}
		return n == 2
	}))
	find := func(name string, kind trace.SpanKind) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, sp := range spans {
			if sp.Name() == name && sp.SpanKind() == kind {
				out = append(out, sp)
			}
		}
		return out
	}
	one := func(name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
		t.Helper()
		got := find(name, kind)
		if len(got) != 1 {
			t.Fatalf("%d %s spans of kind %v, want 1", len(got), name, kind)
		}
		return got[0]
	}
	client, routing := one("stream::set", trace.SpanKindClient), one("stream::set", trace.SpanKindServer)
	commit, publish := one("commit chat", trace.SpanKindInternal), one("send chat", trace.SpanKindProducer)
	deliveries := find("process chat", trace.SpanKindConsumer)
	chain := []struct {
		name          string
		child, parent sdktrace.ReadOnlySpan
	}{{"client", client, nil}, {"routing", routing, client}, {"commit", commit, routing}, {"publish", publish, commit},
		{"delivery 1", deliveries[0], publish}, {"delivery 2", deliveries[1], publish}}
	for _, l := range chain {
		if l.child.SpanContext().TraceID() != tid {
			t.Errorf("%s span is in trace %v, want %v", l.name, l.child.SpanContext().TraceID(), tid)
		}
		if l.parent != nil && l.child.Parent().SpanID() != l.parent.SpanContext().SpanID() {
			t.Errorf("%s span's parent is %v, want %s", l.name, l.child.Parent().SpanID(), l.parent.Name())
		}
	}
	counts := map[int64]bool{}
	for _, d := range deliveries {
		for _, kv := range d.Attributes() {
			if kv.Key == tracing.TrineSubscriberCount {
				counts[kv.Value.AsInt64()] = true
			}
		}
		if len(d.Links()) != 1 || d.Links()[0].SpanContext.SpanID() != publish.SpanContext().SpanID() {
			t.Errorf("delivery links %v, want the publish", d.Links())
		}
	}
	if !counts[1] || !counts[2] {
		t.Errorf("delivery subscriber counts %v, want 2 on one gateway and 1 on the other", counts)
	}
}

// TestTracingOffMakesNoDeliverySpans: a gateway without a TracerProvider
// delivers a traced event as before and makes no span.
func TestTracingOffMakesNoDeliverySpans(t *testing.T) {
	t.Parallel()
	tp, rec := otlptest.NewRecorder(t)
	s := newStack(t, gateway.Config{}, streammodule.Config{TracerProvider: tp})
	c := s.dial(t, groupPath("chat", "room"), nil)
	if f := c.read(); f.kind() != "sync" {
		t.Fatalf("first frame %s", f.Raw)
	}
	s.set(t, "chat", "room", "m1", "hi")
	if f := c.read(); f.kind() != "create" {
		t.Fatalf("frame %s, want the create", f.Raw)
	}
	for _, sp := range rec.Ended() {
		if sp.SpanKind() == trace.SpanKindConsumer {
			t.Errorf("gateway without tracing made span %q", sp.Name())
		}
	}
}
