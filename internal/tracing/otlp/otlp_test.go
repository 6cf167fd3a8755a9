package otlp_test

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlp"
	"github.com/trinehq/trine/internal/tracing/otlptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestPipelineExportsAndForwards: Trine's own spans and the OTLP JSON an
// iii worker forwards reach the same collector, the forwarded span with
// the trace and parent ids it was sent with (hex in OTLP JSON).
func TestPipelineExportsAndForwards(t *testing.T) {
	col := otlptest.NewCollector(t)
	p, err := otlp.New(t.Context(), otlp.Config{Endpoint: col.URL, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tracing.Tracer(p.TracerProvider()).Start(context.Background(), "trine span")
	sc := span.SpanContext()
	span.End()
	tid, sid := sc.TraceID(), sc.SpanID()
	msg := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"iii-worker"}}]},
	  "scopeSpans":[{"scope":{"name":"iii"},"spans":[{"traceId":"` + hex.EncodeToString(tid[:]) + `","spanId":"0102030405060708",
	  "parentSpanId":"` + hex.EncodeToString(sid[:]) + `","name":"iii handler","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}`
	if err := p.ForwardJSON([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := p.ForwardJSON([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`)); !errors.Is(err, otlp.ErrForwardInvalid) {
		t.Errorf("ForwardJSON(bad id) = %v, want ErrForwardInvalid", err)
	}
	_ = ctx
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	owns, fwds := col.Named("trine span"), col.Named("iii handler")
	if len(owns) != 1 || len(fwds) != 1 {
		t.Fatalf("collector got %v, want both spans", col.Spans())
	}
	own, fwd := owns[0], fwds[0]
	if own.Service != "trine" || fwd.Service != "iii-worker" {
		t.Errorf("services %q and %q, want trine and iii-worker", own.Service, fwd.Service)
	}
	if string(fwd.GetTraceId()) != string(tid[:]) || string(fwd.GetParentSpanId()) != string(sid[:]) || string(own.GetTraceId()) != string(tid[:]) {
		t.Errorf("forwarded span trace %x parent %x, want %x %x", fwd.GetTraceId(), fwd.GetParentSpanId(), tid, sid)
	}
	if err := p.ForwardJSON([]byte(msg)); !errors.Is(err, otlp.ErrForwardFull) {
		t.Errorf("ForwardJSON after Shutdown = %v, want ErrForwardFull", err)
	}
	if err := p.Shutdown(sctx); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
}

// TestPipelineRefusesUnknownProtocol: a protocol other than grpc or
// http/protobuf is an error, not a silent default.
func TestPipelineRefusesUnknownProtocol(t *testing.T) {
	if _, err := otlp.New(t.Context(), otlp.Config{Protocol: "http/json"}); err == nil {
		t.Fatal("New(http/json) succeeded")
	}
}

// TestShutdownDoesNotWaitForAHungCollector: with forwarded messages
// queued and a collector that never answers, Shutdown returns by its
// context's deadline (the engine's 5 s at exit) instead of trying each
// message in turn, for the exporter's timeout each.
func TestShutdownDoesNotWaitForAHungCollector(t *testing.T) {
	release := make(chan struct{})
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer col.Close()
	defer close(release)
	p, err := otlp.New(t.Context(), otlp.Config{Endpoint: col.URL, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	msg := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"s","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}`
	for range 20 {
		if err := p.ForwardJSON([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = p.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v with a 300ms deadline and a hung collector", d)
	}
}
