package prommetrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/prommetrics"
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
