package otlp_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is an OTLP/HTTP receiver of traces.
type collector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				c.spans = append(c.spans, ss.GetSpans()...)
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	t.Cleanup(func() {
		c.srv.CloseClientConnections()
		c.srv.Close()
	})
	return c
}

func (c *collector) byName() map[string]*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]*tracepb.Span{}
	for _, s := range c.spans {
		m[s.GetName()] = s
	}
	return m
}

// TestPipelineExportsAndForwards: Trine's own spans and the OTLP JSON an
// iii worker forwards reach the same collector, the forwarded span with
// the trace and parent ids it was sent with (hex in OTLP JSON).
func TestPipelineExportsAndForwards(t *testing.T) {
	col := newCollector(t)
	p, err := otlp.New(t.Context(), otlp.Config{Endpoint: col.srv.URL, SampleRatio: 1})
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
	got := col.byName()
	own, fwd := got["trine span"], got["iii handler"]
	if own == nil || fwd == nil {
		t.Fatalf("collector got %v, want both spans", got)
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
