package natsroute_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/engine/natsroute"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tracing/otlptest"
)

// TestTraceCrossEngineCall: a call that engine B sends over NATS to the
// engine A whose worker serves it stays in its trace: B's routing span,
// the NATS client span, and A's routing span are parent and child in
// turn.
func TestTraceCrossEngineCall(t *testing.T) {
	t.Parallel()
	tp, rec := otlptest.NewRecorder(t)
	ns := natstest.Start(t)
	start := func() *enginetest.Server {
		r := natsroute.New(natstest.Connect(t, ns), nil).WithTracerProvider(tp)
		srv := enginetest.Start(t, engine.Config{Remote: r, DefaultTimeout: 10 * time.Second, TracerProvider: tp}, grpcserver.Config{})
		if err := r.Start(srv.Engine); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return srv
	}
	a, b := start(), start()
	wa := worker(t, a.Addr, "on-a")
	if err := wa.RegisterFunction(t.Context(), "test::echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(t.Context(), "root")
	poll.CheckFor(t, 5*time.Second, func() error { // until B learns that A serves it
		_, err := b.Engine.Trigger(ctx, engine.Call{FunctionID: "test::echo", Payload: []byte(`1`)})
		return err
	})
	root.End()
	var routing []sdktrace.ReadOnlySpan
	var send sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			continue
		}
		switch {
		case s.Name() == "test::echo" && s.SpanKind() == trace.SpanKindServer:
			routing = append(routing, s)
		case s.Name() == "send "+natsroute.Subject("test::echo") && s.Parent().SpanID() != root.SpanContext().SpanID():
			send = s
		}
	}
	if send == nil || len(routing) < 2 {
		t.Fatalf("send span %v, routing spans %v", send, routing)
	}
	var onB, onA sdktrace.ReadOnlySpan
	for _, s := range routing {
		switch s.Parent().SpanID() {
		case root.SpanContext().SpanID():
			onB = s
		case send.SpanContext().SpanID():
			onA = s
		}
	}
	if onB == nil || onA == nil || send.Parent().SpanID() != onB.SpanContext().SpanID() || send.SpanKind() != trace.SpanKindClient {
		t.Fatalf("spans not chained root → B routing → NATS send → A routing: B %v, send %v, A %v", onB, send, onA)
	}
}
