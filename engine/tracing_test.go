package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlptest"
)

const upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func recordingEngine(t *testing.T) (*engine.Engine, *tracetest.SpanRecorder) {
	t.Helper()
	tp, rec := otlptest.NewRecorder(t)
	return newEngine(t, engine.Config{TracerProvider: tp}), rec
}

// TestTraceRouting: a call makes one server span named after its
// function, a child of the traceparent the call carries; the handler runs
// under it and the call it receives carries it on; a failure is recorded
// with its code.
func TestTraceRouting(t *testing.T) {
	t.Parallel()
	e, rec := recordingEngine(t)
	var seen engine.Call
	var inCtx trace.SpanContext
	if err := e.RegisterFunction("t::echo", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
		seen, inCtx = c, trace.SpanContextFromContext(ctx)
		return []byte(`1`), nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := e.RegisterFunction("t::fail", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, engine.Errorf(codes.InvalidArgument, "no")
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "t::echo", Traceparent: upstream}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "t::fail", Traceparent: upstream}); err == nil {
		t.Fatal("t::fail succeeded")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	ok, bad := spans[0], spans[1]
	parent := tracing.Parse(upstream)
	if ok.Name() != "t::echo" || ok.SpanKind() != trace.SpanKindServer || ok.Parent().SpanID() != parent.SpanID() || ok.SpanContext().TraceID() != parent.TraceID() {
		t.Errorf("span %q kind %v parent %v, want t::echo, server, child of %v", ok.Name(), ok.SpanKind(), ok.Parent(), parent)
	}
	if inCtx.SpanID() != ok.SpanContext().SpanID() || seen.Traceparent != tracing.Traceparent(ok.SpanContext()) {
		t.Errorf("handler ran under %v with traceparent %q, want span %v", inCtx, seen.Traceparent, ok.SpanContext())
	}
	if bad.Status().Code != otelcodes.Error || bad.Status().Description != string(codes.InvalidArgument) {
		t.Errorf("failed call's status = %v, want error invalid_argument", bad.Status())
	}
}

// TestTraceWorkerAndVoidCalls: a call routed to a worker hands it the
// routing span's traceparent; a void call is traced too.
func TestTraceWorkerAndVoidCalls(t *testing.T) {
	t.Parallel()
	e, rec := recordingEngine(t)
	_, p := attach(t, e, "w", "w::fn")
	if err := e.TriggerVoid(engine.Call{FunctionID: "w::fn", Traceparent: upstream}); err != nil {
		t.Fatal(err)
	}
	inv := <-p.invokes
	spans := rec.Ended()
	if len(spans) != 1 || inv.Traceparent != tracing.Traceparent(spans[0].SpanContext()) || spans[0].Parent().TraceID() != tracing.Parse(upstream).TraceID() {
		t.Fatalf("worker got traceparent %q; spans %v", inv.Traceparent, spans)
	}
}

// TestTracingOffMakesNoSpans: without a TracerProvider a call's
// traceparent reaches the handler untouched and no span is in its ctx.
func TestTracingOffMakesNoSpans(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	if err := e.RegisterFunction("t::echo", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
		if c.Traceparent != upstream || trace.SpanContextFromContext(ctx).IsValid() {
			return nil, errors.New("traced")
		}
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "t::echo", Traceparent: upstream}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkTriggerBuiltin measures the routing of a call to a built-in
// handler, with tracing off (the default) and on.
func BenchmarkTriggerBuiltin(b *testing.B) {
	run := func(b *testing.B, cfg engine.Config) {
		e, err := engine.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.RegisterFunction("t::nop", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) { return nil, nil })); err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Trigger(ctx, engine.Call{FunctionID: "t::nop", Traceparent: upstream}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("off", func(b *testing.B) { run(b, engine.Config{}) })
	b.Run("on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
		defer tp.Shutdown(context.Background())
		run(b, engine.Config{TracerProvider: tp})
	})
}

// TestTraceContextIsBounded: with tracing off the engine passes a call's
// trace context on, so it vets it first: a traceparent that is not a W3C
// one (malformed, or a megabyte of junk) is dropped, as W3C says, and
// baggage over W3C's 8,192 bytes is refused with invalid_argument before
// anything runs, instead of travelling to workers, over NATS and into
// queued jobs.
func TestTraceContextIsBounded(t *testing.T) {
	e := newEngine(t, engine.Config{})
	var got engine.Call
	ran := 0
	if err := e.RegisterFunction("ctx::f", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		got, ran = c, ran+1
		return []byte(`null`), nil
	})); err != nil {
		t.Fatal(err)
	}
	const valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tp := range []string{strings.Repeat("x", 1<<20), valid + strings.Repeat("-junk", 1000), "00-zz", "00-00000000000000000000000000000000-b7ad6b7169203331-01"} {
		if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "ctx::f", Traceparent: tp}); err != nil {
			t.Fatal(err)
		}
		if got.Traceparent != "" {
			t.Fatalf("traceparent %.40q… (%d bytes) reached the function as %.40q", tp, len(tp), got.Traceparent)
		}
	}
	// A later version's extra fields are cut, not carried on.
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "ctx::f", Traceparent: "01" + valid[2:] + "-" + strings.Repeat("x", 1<<20)}); err != nil {
		t.Fatal(err)
	}
	if got.Traceparent != valid {
		t.Fatalf("a later version's traceparent reached the function as %.60q (%d bytes), want %s", got.Traceparent, len(got.Traceparent), valid)
	}
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "ctx::f", Traceparent: valid, Baggage: "k=v"}); err != nil {
		t.Fatal(err)
	}
	if got.Traceparent != valid || got.Baggage != "k=v" {
		t.Fatalf("a valid trace context reached the function as %q, %q", got.Traceparent, got.Baggage)
	}
	before := ran
	_, err := e.Trigger(t.Context(), engine.Call{FunctionID: "ctx::f", Baggage: "k=" + strings.Repeat("v", 1<<20)})
	if engine.AsError(err).Code != codes.InvalidArgument || ran != before {
		t.Fatalf("1 MiB of baggage: %v (function ran %d times), want invalid_argument and nothing run", err, ran-before)
	}
	if err := e.TriggerVoid(engine.Call{FunctionID: "ctx::f", Baggage: "k=" + strings.Repeat("v", 1<<20)}); engine.AsError(err).Code != codes.InvalidArgument {
		t.Fatalf("void call with 1 MiB of baggage: %v, want invalid_argument", err)
	}
}
