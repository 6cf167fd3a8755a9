package httptrigger_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlptest"
)

// TestTraceContinuesIncomingTraceparent: a request with a W3C
// traceparent header makes a server span in that trace, named after its
// route, with its status; the route's function runs under it. A request
// without one starts a trace.
func TestTraceContinuesIncomingTraceparent(t *testing.T) {
	t.Parallel()
	tp, rec := otlptest.NewRecorder(t)
	h := startWith(t, engine.Config{TracerProvider: tp}, httptrigger.Config{TracerProvider: tp})
	var seen trace.SpanContext
	h.fn(t, "t::hello", func(ctx context.Context, _ engine.Call) ([]byte, error) {
		seen = trace.SpanContextFromContext(ctx)
		return []byte(`{"status_code":201}`), nil
	})
	h.route(t, "r1", "t::hello", `{"api_path":"/hello/:name","http_method":"POST"}`)
	const upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if r := h.do(t, "POST", "/hello/ann", nil, "traceparent", upstream); r.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	var server, routing sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			if s.Name() == "t::hello" {
				routing = s
			} else {
				server = s
			}
		}
	}
	parent := tracing.Parse(upstream)
	if server == nil || server.Name() != "POST /hello/:name" || server.Parent().SpanID() != parent.SpanID() || server.SpanContext().TraceID() != parent.TraceID() {
		t.Fatalf("request span %v, want POST /hello/:name, child of the traceparent header", server)
	}
	if routing == nil || routing.Parent().SpanID() != server.SpanContext().SpanID() || seen.SpanID() != routing.SpanContext().SpanID() {
		t.Errorf("function's routing span %v is not the child of the request span", routing)
	}
	want := attribute.Int("http.response.status_code", 201)
	found := false
	for _, kv := range server.Attributes() {
		found = found || kv == want
	}
	if !found {
		t.Errorf("request span attributes %v, want %v", server.Attributes(), want)
	}

	if r := h.do(t, "POST", "/hello/bob", nil); r.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	last := rec.Ended()[len(rec.Ended())-1]
	if last.Parent().IsValid() || last.SpanContext().TraceID() == parent.TraceID() {
		t.Errorf("a request without traceparent made span %q with parent %v, want a new trace", last.Name(), last.Parent())
	}
}

// TestTraceOfAnUnknownMethodIsBounded: a request's method is anyone's to
// choose, up to the header limit; a method HTTP does not define makes a
// span named HTTP with http.request.method _OTHER, as the HTTP
// conventions say, instead of a span and attribute of 100 KB each.
func TestTraceOfAnUnknownMethodIsBounded(t *testing.T) {
	t.Parallel()
	tp, rec := otlptest.NewRecorder(t)
	h := startWith(t, engine.Config{TracerProvider: tp}, httptrigger.Config{TracerProvider: tp})
	h.do(t, strings.Repeat("X", 100<<10), "/nowhere", nil)
	h.do(t, "GET", "/nowhere", nil)
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, want := range []string{"_OTHER", "GET"} {
		s := spans[i]
		name := want
		if want == "_OTHER" {
			name = "HTTP"
		}
		got := ""
		for _, kv := range s.Attributes() {
			if kv.Key == "http.request.method" {
				got = kv.Value.AsString()
			}
		}
		if s.Name() != name || got != want {
			t.Errorf("span %.40q (%d bytes) with method %.40q, want %s with %s", s.Name(), len(s.Name()), got, name, want)
		}
	}
}
