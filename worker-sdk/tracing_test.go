package trine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tracing/otlptest"
)

// TestTraceCallThroughEngineToHandler: with a TracerProvider installed,
// a Trigger makes a client span, the engine's routing span is its child
// and the handler's server span is the routing span's child, all in one
// trace; a call the handler makes is a child of its server span. (The
// test installs the global provider, so it is not parallel.)
func TestTraceCallThroughEngineToHandler(t *testing.T) {
	tp, rec := otlptest.NewRecorder(t)
	otel.SetTracerProvider(tp)
	srv := enginetest.Start(t, engine.Config{TracerProvider: tp}, grpcserver.Config{})
	w := connect(t, srv.Addr)
	if err := w.RegisterFunction(t.Context(), "t::outer", func(ctx context.Context, _ json.RawMessage) (any, error) {
		return w.Trigger(ctx, "engine::health::check", nil)
	}); err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(t.Context(), "root")
	if _, err := w.Trigger(ctx, "t::outer", nil); err != nil {
		t.Fatal(err)
	}
	root.End()
	tid := root.SpanContext().TraceID()
	byKey := map[string]sdktrace.ReadOnlySpan{}
	poll.CheckFor(t, 10*time.Second, poll.Holds("six spans of the trace", func() bool {
		clear(byKey)
		n := 0
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == tid {
				byKey[s.Name()+"/"+s.SpanKind().String()] = s
				n++
			}
		}
		return n == 6
	}))
	chain := []string{"root/internal", "t::outer/client", "t::outer/server", "t::outer/server", "engine::health::check/client", "engine::health::check/server"}
	// root → SDK client → engine routing → SDK handler → SDK client → engine routing
	outerServer := []sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == tid && s.Name() == "t::outer" && s.SpanKind() == trace.SpanKindServer {
			outerServer = append(outerServer, s)
		}
	}
	if len(outerServer) != 2 {
		t.Fatalf("%d t::outer server spans, want the engine's and the handler's", len(outerServer))
	}
	routing, handler := outerServer[0], outerServer[1]
	if handler.Parent().SpanID() != routing.SpanContext().SpanID() {
		routing, handler = handler, routing
	}
	want := []struct{ child, parent sdktrace.ReadOnlySpan }{
		{byKey[chain[1]], byKey[chain[0]]},
		{routing, byKey[chain[1]]},
		{handler, routing},
		{byKey[chain[4]], handler},
		{byKey[chain[5]], byKey[chain[4]]},
	}
	for i, l := range want {
		if l.child == nil || l.parent == nil || l.child.Parent().SpanID() != l.parent.SpanContext().SpanID() {
			t.Errorf("link %d: %v is not a child of %v", i, l.child, l.parent)
		}
	}
}
