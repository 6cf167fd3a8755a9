package natsroute_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/engine/natsroute"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/natstest"
	trine "github.com/trinehq/trine/worker-sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startEngine runs an engine whose Router uses its own NATS connection.
func startEngine(t *testing.T, ns *server.Server) *enginetest.Server {
	t.Helper()
	r := natsroute.New(natstest.Connect(t, ns), nil)
	srv := enginetest.Start(t, engine.Config{Remote: r, DefaultTimeout: 10 * time.Second}, grpcserver.Config{})
	if err := r.Start(srv.Engine); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return srv
}

func worker(t *testing.T, addr, name string) *trine.Worker {
	t.Helper()
	w := trine.RegisterWorker(addr, trine.WithName(name), trine.WithCloseTimeout(time.Second),
		trine.WithReconnectBackoff(20*time.Millisecond, 100*time.Millisecond))
	t.Cleanup(func() { w.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func code(err error) trine.Code {
	var e *trine.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestCallsCrossEngines(t *testing.T) {
	ns := natstest.Start(t)
	a, b := startEngine(t, ns), startEngine(t, ns)
	wa := worker(t, a.Addr, "on-a")
	var cancelled atomic.Int32
	started := make(chan struct{}, 4)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(wa.RegisterFunction(t.Context(), "test::echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }))
	must(wa.RegisterFunction(t.Context(), "test::fail", func(context.Context, json.RawMessage) (any, error) {
		return nil, &trine.Error{Code: trine.CodeConflict, Message: "line one\nline two"}
	}))
	must(wa.RegisterFunction(t.Context(), "test::block", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		cancelled.Add(1)
		return nil, ctx.Err()
	}))
	wb := worker(t, b.Addr, "on-b")
	ctx := context.Background()

	out, err := wb.Trigger(ctx, "test::echo", map[string]any{"x": 1})
	if err != nil || string(out) != `{"x":1}` {
		t.Fatalf("echo through engine B: %s %v", out, err)
	}
	if _, err := wb.Trigger(ctx, "test::fail", nil); code(err) != trine.CodeConflict || !errors.Is(err, trine.ErrConflict) {
		t.Fatalf("error code across the hop: %v", err)
	}
	if _, err := wb.Trigger(ctx, "test::nobody", nil); code(err) != trine.CodeFunctionNotFound {
		t.Fatalf("unknown function: %v", err)
	}

	// The caller's deadline reaches the handler on engine A.
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = wb.Trigger(dctx, "test::block", nil)
	cancel()
	if code(err) != trine.CodeDeadlineExceeded {
		t.Fatalf("deadline across the hop: %v", err)
	}
	// So does a cancellation.
	cctx, cancel := context.WithCancel(ctx)
	go func() { <-started; <-started; cancel() }() // the first start was the deadline call
	_, err = wb.Trigger(cctx, "test::block", nil)
	if code(err) != trine.CodeCancelled {
		t.Fatalf("cancel across the hop: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cancelled.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if cancelled.Load() != 2 {
		t.Fatalf("the handler on engine A saw %d of 2 cancellations", cancelled.Load())
	}

	// Once the worker stops serving it, engine B no longer finds it.
	must(wa.UnregisterFunction(ctx, "test::echo"))
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, err := wb.Trigger(ctx, "test::echo", 1)
		if code(err) == trine.CodeFunctionNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo still served after unregister: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A worker that disconnects mid-call fails the call with
// worker_disconnected, also for a caller on another engine.
func TestWorkerDisconnectedAcrossEngines(t *testing.T) {
	ns := natstest.Start(t)
	a, b := startEngine(t, ns), startEngine(t, ns)
	p := enginetest.NewProxy(t, a.Addr)
	wa := worker(t, p.Addr, "flaky")
	started := make(chan struct{})
	var once sync.Once
	if err := wa.RegisterFunction(t.Context(), "test::hang", func(ctx context.Context, _ json.RawMessage) (any, error) {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	wb := worker(t, b.Addr, "caller")
	go func() { <-started; p.Cut() }()
	_, err := wb.Trigger(context.Background(), "test::hang", nil)
	if code(err) != trine.CodeWorkerDisconnected {
		t.Fatalf("worker lost mid-call: %v", err)
	}
}

// NATS balances calls between the engines that serve a function.
func TestBalancedBetweenEngines(t *testing.T) {
	ns := natstest.Start(t)
	a, b, c := startEngine(t, ns), startEngine(t, ns), startEngine(t, ns)
	for _, s := range []struct {
		srv  *enginetest.Server
		name string
	}{{a, "a"}, {c, "c"}} {
		w := worker(t, s.srv.Addr, s.name)
		if err := w.RegisterFunction(t.Context(), "test::who", func(context.Context, json.RawMessage) (any, error) { return s.name, nil }); err != nil {
			t.Fatal(err)
		}
	}
	wb := worker(t, b.Addr, "caller")
	seen := map[string]int{}
	for range 200 {
		out, err := wb.Trigger(context.Background(), "test::who", nil)
		if err != nil {
			t.Fatal(err)
		}
		seen[string(out)]++
	}
	if seen[`"a"`] < 40 || seen[`"c"`] < 40 {
		t.Fatalf("calls through B spread as %v", seen)
	}
}

// A closed Router (a draining engine) stops taking calls from other
// engines at once, and the engine's later registry changes never block.
func TestClosedRouter(t *testing.T) {
	ns := natstest.Start(t)
	r := natsroute.New(natstest.Connect(t, ns), nil)
	a := enginetest.Start(t, engine.Config{Remote: r, MaxFunctionsPerWorker: 2000}, grpcserver.Config{})
	if err := r.Start(a.Engine); err != nil {
		t.Fatal(err)
	}
	b := startEngine(t, ns)
	wa := worker(t, a.Addr, "many")
	for i := range 1100 {
		if err := wa.RegisterFunction(t.Context(), "test::f"+strconv.Itoa(i), func(context.Context, json.RawMessage) (any, error) { return "a", nil }); err != nil {
			t.Fatal(err)
		}
	}
	wb := worker(t, b.Addr, "caller")
	if out, err := wb.Trigger(context.Background(), "test::f7", nil); err != nil || string(out) != `"a"` {
		t.Fatalf("before Close: %s %v", out, err)
	}
	r.Close()
	if _, err := wb.Trigger(context.Background(), "test::f7", nil); code(err) != trine.CodeFunctionNotFound {
		t.Fatalf("after Close: %v", err)
	}
	done := make(chan struct{})
	go func() { wa.Close(); close(done) }() // 1,100 Unserve calls
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine blocked on Unserve after the Router closed")
	}
	r.Close() // idempotent
}

// TestFormatsCheckedByTheServingEngine: a call from engine B for a
// function whose worker is on engine A is checked against the function's
// formats on A, the engine that holds them (B has none to check against,
// so it is checked once): an invalid payload is refused with its pointer
// before the handler runs, and an invalid result is a handler_error naming
// the rule.
func TestFormatsCheckedByTheServingEngine(t *testing.T) {
	ns := natstest.Start(t)
	a, b := startEngine(t, ns), startEngine(t, ns)
	wa := worker(t, a.Addr, "on-a")
	var calls atomic.Int32
	err := wa.RegisterFunction(t.Context(), "test::add", func(_ context.Context, in json.RawMessage) (any, error) {
		calls.Add(1)
		if string(in) == `{"a":0}` {
			return map[string]string{"sum": "zero"}, nil
		}
		return map[string]int{"sum": 1}, nil
	}, trine.WithRequestFormat(`{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}`),
		trine.WithResponseFormat(`{"type":"object","properties":{"sum":{"type":"integer"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	wb := worker(t, b.Addr, "on-b")
	ctx := t.Context()
	_, err = wb.Trigger(ctx, "test::add", map[string]any{"a": "one"})
	if code(err) != trine.CodeInvalidArgument || !strings.Contains(err.Error(), `payload for "test::add" breaks its request_format: /a: expected integer, got string`) {
		t.Fatalf("invalid payload through engine B: %v", err)
	}
	// The mark that tells a caller's mistake from the function's own
	// invalid_argument (an HTTP trigger's 400) crosses too.
	if _, err := b.Engine.Trigger(ctx, engine.Call{FunctionID: "test::add", Payload: []byte(`{"a":"one"}`)}); !errors.Is(err, engine.ErrRequestFormat) {
		t.Fatalf("refusal through engine B = %v, want ErrRequestFormat", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for a refused payload", n)
	}
	if out, err := wb.Trigger(ctx, "test::add", map[string]any{"a": 1}); err != nil || string(out) != `{"sum":1}` {
		t.Fatalf("valid call through engine B: %s %v", out, err)
	}
	_, err = wb.Trigger(ctx, "test::add", map[string]any{"a": 0})
	if code(err) != trine.CodeHandlerError || !strings.Contains(err.Error(), "/sum: expected integer, got string") {
		t.Fatalf("invalid result through engine B: %v", err)
	}
	if _, ok := b.Engine.FunctionInfo("test::add"); ok {
		t.Fatal("engine B holds the function's formats too")
	}
}
