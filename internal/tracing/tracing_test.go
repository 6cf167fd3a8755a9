package tracing_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/tracing"
)

// TestTraceparentRoundTrip: what Traceparent writes, Parse reads back,
// and Parse refuses what the W3C spec calls invalid.
func TestTraceparentRoundTrip(t *testing.T) {
	t.Parallel()
	const h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sc := tracing.Parse(h)
	if !sc.IsValid() || !sc.IsSampled() || !sc.IsRemote() {
		t.Fatalf("Parse(%q) = %v, want a valid sampled remote context", h, sc)
	}
	if got := tracing.Traceparent(sc); got != h {
		t.Errorf("Traceparent(Parse(h)) = %q, want %q", got, h)
	}
	for _, bad := range []string{"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		if sc := tracing.Parse(bad); sc.IsValid() {
			t.Errorf("Parse(%q) = %v, want invalid", bad, sc)
		}
	}
	if sc := tracing.Parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"); !sc.IsValid() {
		t.Error("Parse(a later version with more fields) is invalid, want its first fields")
	}
	ctx := tracing.Context(context.Background(), h)
	if got := trace.SpanContextFromContext(ctx); got.TraceID() != sc.TraceID() || tracing.FromContext(ctx) != h {
		t.Errorf("Context(h) carries %v", got)
	}
	if tracing.Tracer(nil) != nil {
		t.Error("Tracer(nil) is not nil")
	}
}
