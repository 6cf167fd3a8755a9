package prommetrics_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/natsroute"
	"github.com/trinehq/trine/engine/prommetrics"
	"github.com/trinehq/trine/internal/natstest"
)

// observed returns an engine whose calls m counts into reg.
func observed(t *testing.T) (*prometheus.Registry, *prommetrics.Metrics, *engine.Engine) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := prommetrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Config{Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	return reg, m, e
}

func TestMetrics(t *testing.T) {
	reg, _, e := observed(t)
	if err := prommetrics.RegisterEngine(reg, e); err != nil {
		t.Fatal(err)
	}
	_ = e.RegisterFunction("t::fail", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("boom")
	}))
	ctx := context.Background()
	_, _ = e.Trigger(ctx, engine.Call{FunctionID: engine.FnHealthCheck})
	_, _ = e.Trigger(ctx, engine.Call{FunctionID: engine.FnHealthCheck})
	_, _ = e.Trigger(ctx, engine.Call{FunctionID: "t::fail"})
	_, _ = e.Trigger(ctx, engine.Call{FunctionID: "random-id-from-a-caller"})
	want := `
# HELP trine_calls_total Awaited calls by function and outcome code (ok on success).
# TYPE trine_calls_total counter
trine_calls_total{code="function_not_found",function_id="_unregistered"} 1
trine_calls_total{code="handler_error",function_id="t::fail"} 1
trine_calls_total{code="ok",function_id="engine::health::check"} 2
# HELP trine_functions_registered Registered function ids, built-in ones included.
# TYPE trine_functions_registered gauge
trine_functions_registered 21
# HELP trine_workers_connected Connected worker sessions.
# TYPE trine_workers_connected gauge
trine_workers_connected 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "trine_calls_total", "trine_functions_registered", "trine_workers_connected"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "trine_call_duration_seconds"); n != 3 {
		t.Fatalf("duration series = %d, want 3", n)
	}
}

// TestHandlersOwnCodesKeepTheirLabel: a registered function's own
// invalid_argument or unavailable is counted under its id; only ids that
// are not registered (which any caller may make up) go under _unregistered.
func TestHandlersOwnCodesKeepTheirLabel(t *testing.T) {
	reg, m, e := observed(t)
	m.Known(e.HasFunction)
	_ = e.RegisterFunction("t::picky", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, engine.Errorf(codes.InvalidArgument, "no")
	}))
	_ = e.RegisterFunction("t::down", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, engine.Errorf(codes.Unavailable, "later")
	}))
	ctx := context.Background()
	_, _ = e.Trigger(ctx, engine.Call{FunctionID: "t::picky"})
	_, _ = e.Trigger(ctx, engine.Call{FunctionID: "t::down"})
	_, _ = e.Trigger(ctx, engine.Call{FunctionID: "made-up"})
	want := `
# HELP trine_calls_total Awaited calls by function and outcome code (ok on success).
# TYPE trine_calls_total counter
trine_calls_total{code="function_not_found",function_id="_unregistered"} 1
trine_calls_total{code="invalid_argument",function_id="t::picky"} 1
trine_calls_total{code="unavailable",function_id="t::down"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "trine_calls_total"); err != nil {
		t.Fatal(err)
	}
}

// TestVoidCalls: void calls are counted by function and code, ok when
// they started, under the same bounded labels as awaited calls.
func TestVoidCalls(t *testing.T) {
	reg, m, e := observed(t)
	m.Known(e.HasFunction)
	ran := make(chan struct{}, 1)
	_ = e.RegisterFunction("t::bg", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		ran <- struct{}{}
		return nil, nil
	}))
	if err := e.TriggerVoid(engine.Call{FunctionID: "t::bg"}); err != nil {
		t.Fatal(err)
	}
	<-ran
	_ = e.TriggerVoid(engine.Call{FunctionID: "made-up"})
	// Started for an id this engine does not serve: it went to other
	// engines, and any caller may make such ids up.
	m.VoidCall("served-elsewhere-or-nowhere", "")
	want := `
# HELP trine_void_calls_total Void (fire-and-forget) calls by function and code: ok when started, else why it was refused; their own outcome is never known.
# TYPE trine_void_calls_total counter
trine_void_calls_total{code="function_not_found",function_id="_unregistered"} 1
trine_void_calls_total{code="ok",function_id="_elsewhere"} 1
trine_void_calls_total{code="ok",function_id="t::bg"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "trine_void_calls_total"); err != nil {
		t.Fatal(err)
	}
}

// TestMadeUpIdsRoutedToNATSDoNotGrowLabels: a call for an id no engine
// serves goes to NATS, and may fail there before any engine answered
// (a payload over the server's max_payload, a deadline): such made-up
// ids must not become label values, or any caller could grow /metrics
// without bound.
func TestMadeUpIdsRoutedToNATSDoNotGrowLabels(t *testing.T) {
	ns := natstest.StartOptions(t, server.Options{MaxPayload: 1 << 10})
	reg := prometheus.NewPedanticRegistry()
	m, err := prommetrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := natsroute.New(natstest.Connect(t, ns), slog.New(slog.DiscardHandler))
	e, err := engine.New(engine.Config{Observer: m, Remote: r})
	if err != nil {
		t.Fatal(err)
	}
	m.Known(e.HasFunction)
	big := []byte(`"` + strings.Repeat("x", 2<<10) + `"`)
	for i := range 20 {
		_, err := e.Trigger(t.Context(), engine.Call{FunctionID: fmt.Sprintf("made-up-%d", i), Payload: big})
		if err == nil {
			t.Fatal("a call of a made-up id succeeded")
		}
		_, _ = e.Trigger(t.Context(), engine.Call{FunctionID: fmt.Sprintf("made-up-late-%d", i), Timeout: time.Nanosecond})
		_ = e.TriggerVoid(engine.Call{FunctionID: fmt.Sprintf("made-up-void-%d", i), Payload: big})
	}
	for _, name := range []string{"trine_calls_total", "trine_call_duration_seconds", "trine_void_calls_total"} {
		if n := testutil.CollectAndCount(reg, name); n > 3 {
			t.Errorf("%s has %d series after calls of 60 made-up ids", name, n)
		}
	}
}
