package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

func TestWorkersCallEachOther(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	a := connect(t, srv.Addr, trine.WithName("a"))
	b := connect(t, srv.Addr, trine.WithName("b"))
	if err := a.RegisterFunction(t.Context(), "a::add", func(_ context.Context, in json.RawMessage) (any, error) {
		var p struct{ A, B int }
		if err := json.Unmarshal(in, &p); err != nil {
			return nil, err
		}
		return p.A + p.B, nil
	}); err != nil {
		t.Fatalf("RegisterFunction(a::add) = %v", err)
	}
	if err := b.RegisterFunction(t.Context(), "b::twice", func(ctx context.Context, in json.RawMessage) (any, error) {
		var n int
		if err := json.Unmarshal(in, &n); err != nil {
			return nil, err
		}
		return b.Trigger(ctx, "a::add", map[string]int{"a": n, "b": n}) // b calls back into a
	}); err != nil {
		t.Fatalf("RegisterFunction(b::twice) = %v", err)
	}
	out, err := a.Trigger(t.Context(), "b::twice", 21)
	if err != nil || string(out) != "42" {
		t.Fatalf("a.Trigger(b::twice, 21) = %s, %v; want 42", out, err)
	}
	out, err = b.Trigger(t.Context(), "a::add", map[string]int{"a": 1, "b": 2})
	if err != nil || string(out) != "3" {
		t.Fatalf("b.Trigger(a::add) = %s, %v; want 3", out, err)
	}
}

type mulIn struct{ A, B int }
type mulOut struct {
	Product int `json:"product"`
}

func TestTypedFunction(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := connect(t, srv.Addr)
	if err := trine.RegisterFunctionTyped(t.Context(), w, "math::mul", func(_ context.Context, in mulIn) (mulOut, error) {
		return mulOut{Product: in.A * in.B}, nil
	}); err != nil {
		t.Fatalf("RegisterFunctionTyped = %v", err)
	}
	out, err := w.Trigger(t.Context(), "math::mul", mulIn{A: 6, B: 7})
	if err != nil || string(out) != `{"product":42}` {
		t.Fatalf("Trigger(math::mul) = %s, %v", out, err)
	}
	_, err = w.Trigger(t.Context(), "math::mul", "not an object")
	wantCode(t, err, trine.CodeInvalidArgument)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{MaxMessageBytes: 64 << 10})
	w := connect(t, srv.Addr)
	if err := w.RegisterFunction(t.Context(), "fail::coded", func(context.Context, json.RawMessage) (any, error) {
		return nil, &trine.Error{Code: trine.CodeConflict, Message: "version mismatch"}
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterFunction(t.Context(), "fail::plain", func(context.Context, json.RawMessage) (any, error) {
		return nil, errors.New("boom")
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterFunction(t.Context(), "fail::panic", func(context.Context, json.RawMessage) (any, error) {
		panic("kaboom")
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterFunction(t.Context(), "big::result", func(context.Context, json.RawMessage) (any, error) {
		return strings.Repeat("x", 100<<10), nil
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("UnknownFunction", func(t *testing.T) {
		_, err := w.Trigger(t.Context(), "no::such", nil)
		if !errors.Is(err, trine.ErrFunctionNotFound) {
			t.Fatalf("Trigger(no::such) = %v, want ErrFunctionNotFound", err)
		}
		wantCode(t, err, trine.CodeFunctionNotFound)
	})
	t.Run("CodedError", func(t *testing.T) {
		_, err := w.Trigger(t.Context(), "fail::coded", nil)
		wantCode(t, err, trine.CodeConflict)
		if !strings.Contains(err.Error(), "version mismatch") {
			t.Fatalf("error %q lacks the handler's message", err)
		}
	})
	t.Run("PlainError", func(t *testing.T) {
		_, err := w.Trigger(t.Context(), "fail::plain", nil)
		wantCode(t, err, trine.CodeHandlerError)
		if !strings.Contains(err.Error(), "boom") {
			t.Fatalf("error %q lacks the handler's message", err)
		}
	})
	t.Run("PanicKeepsWorker", func(t *testing.T) {
		_, err := w.Trigger(t.Context(), "fail::panic", nil)
		wantCode(t, err, trine.CodeHandlerError)
		if !strings.Contains(err.Error(), "kaboom") {
			t.Fatalf("error %q lacks the panic value", err)
		}
		if _, err := w.Trigger(t.Context(), "fail::coded", nil); !errors.Is(err, trine.ErrConflict) {
			t.Fatalf("worker unusable after a panic: %v", err)
		}
	})
	t.Run("MalformedJSONPayload", func(t *testing.T) {
		_, err := w.Trigger(t.Context(), "fail::coded", json.RawMessage(`{"a":`))
		wantCode(t, err, trine.CodeInvalidArgument)
	})
	t.Run("OversizePayload", func(t *testing.T) {
		_, err := w.Trigger(t.Context(), "fail::coded", strings.Repeat("y", 100<<10))
		wantCode(t, err, trine.CodeMessageTooLarge)
	})
	t.Run("OversizeResult", func(t *testing.T) {
		_, err := w.Trigger(t.Context(), "big::result", nil)
		wantCode(t, err, trine.CodeMessageTooLarge)
	})
	t.Run("InvalidIDs", func(t *testing.T) {
		for _, id := range []string{"", "bad\nid", strings.Repeat("x", 257), "nul\x00"} {
			err := w.RegisterFunction(t.Context(), id, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
			wantCode(t, err, trine.CodeInvalidArgument)
			_, err = w.Trigger(t.Context(), id, nil)
			wantCode(t, err, trine.CodeInvalidArgument)
		}
		err := w.RegisterFunction(t.Context(), "engine::mine", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
		wantCode(t, err, trine.CodeForbidden)
	})
	t.Run("StillServing", func(t *testing.T) {
		if _, err := w.Trigger(t.Context(), "fail::coded", nil); !errors.Is(err, trine.ErrConflict) {
			t.Fatalf("after bad input the worker no longer serves: %v", err)
		}
	})
}

func TestDeadlineAndCancelReachHandler(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := connect(t, srv.Addr)
	ended := make(chan error, 1)
	started := make(chan struct{}, 2)
	if err := w.RegisterFunction(t.Context(), "slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, srv.Addr)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := caller.Trigger(ctx, "slow", nil)
	wantCode(t, err, trine.CodeDeadlineExceeded)
	select {
	case herr := <-ended:
		if !errors.Is(herr, context.DeadlineExceeded) && !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler ctx ended with %v", herr)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the deadline never reached the handler")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("deadline of 200ms took %v", el)
	}

	ctx, cancel = context.WithCancel(t.Context())
	go func() {
		_, err := caller.Trigger(ctx, "slow", nil)
		ended <- err
	}()
	<-started // phase one's handler
	select {  // the second call reached its handler
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the second call never reached the worker")
	}
	cancel()
	for range 2 { // the handler's ctx and the caller's error, in either order
		select {
		case err := <-ended:
			if err == nil {
				t.Fatal("cancelled call returned no error")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("cancellation never reached the handler")
		}
	}
}

func TestEngineDefaultDeadline(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{DefaultTimeout: 150 * time.Millisecond}, grpcserver.Config{})
	w := connect(t, srv.Addr)
	if err := w.RegisterFunction(t.Context(), "hang", func(ctx context.Context, _ json.RawMessage) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	// The engine bounds calls that come without a deadline: the unary RPC.
	_, err := srv.Engine.Trigger(context.Background(), engine.Call{FunctionID: "hang"})
	if !errors.Is(err, engine.ErrDeadlineExceeded) {
		t.Fatalf("Trigger(hang) = %v, want deadline_exceeded from the engine's default", err)
	}
}

func TestVoid(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := connect(t, srv.Addr)
	got := make(chan string, 1)
	release := make(chan struct{})
	if err := w.RegisterFunction(t.Context(), "log", func(_ context.Context, in json.RawMessage) (any, error) {
		got <- string(in)
		<-release
		return "ignored", nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := w.TriggerVoid(t.Context(), "log", "hello"); err != nil {
		t.Fatalf("TriggerVoid = %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("TriggerVoid took %v; it must not wait for the handler", el)
	}
	select {
	case in := <-got:
		if in != `"hello"` {
			t.Fatalf("handler got %s", in)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("void call never ran")
	}
	close(release)
	// The void call produced no pending state anywhere.
	poll.CheckFor(t, 5*time.Second, poll.Holds("in-flight back to 0", func() bool {
		ws := srv.Engine.Workers()
		return len(ws) == 1 && ws[0].InFlight == 0
	}))
}

func TestReconnectRestoresRegistrations(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	var replays []error
	var mu sync.Mutex
	w := connect(t, srv.Addr, trine.WithErrorHandler(func(err error) { mu.Lock(); replays = append(replays, err); mu.Unlock() }))
	if err := w.RegisterFunction(t.Context(), "echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
		t.Fatal(err)
	}
	tp := &recordingProvider{}
	if err := w.RegisterTriggerType(t.Context(), "ticker", "test type", tp); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(t.Context(), trine.Trigger{ID: "t1", Type: "ticker", FunctionID: "echo", Config: map[string]int{"every": 1}}); err != nil {
		t.Fatalf("RegisterTrigger = %v", err)
	}
	oldID := w.ID()
	srv.Restart()
	caller := connect(t, srv.Addr)
	poll.CheckFor(t, 10*time.Second, poll.Holds("echo to be served again after the restart", func() bool {
		out, err := caller.Trigger(t.Context(), "echo", "again")
		return err == nil && string(out) == `"again"`
	}))
	poll.CheckFor(t, 5*time.Second, poll.Holds("trigger t1 restored", func() bool {
		_, ts := srv.Engine.Triggers()
		return len(ts) == 1 && ts[0].ID == "t1" && ts[0].Status == "active"
	}))
	if w.ID() == "" || w.ID() == oldID {
		t.Logf("worker id %q after restart (was %q)", w.ID(), oldID)
	}
	if n := tp.registered.Load(); n < 2 {
		t.Fatalf("provider saw %d registrations of t1, want one per engine life", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(replays) > 0 {
		t.Fatalf("replay reported errors: %v", replays)
	}
}

type recordingProvider struct {
	registered, unregistered atomic.Int32
	refuse                   bool
}

func (p *recordingProvider) RegisterTrigger(_ context.Context, t trine.Trigger) error {
	if p.refuse {
		return fmt.Errorf("config %s is not acceptable", t.Config)
	}
	p.registered.Add(1)
	return nil
}

func (p *recordingProvider) UnregisterTrigger(context.Context, trine.Trigger) error {
	p.unregistered.Add(1)
	return nil
}

func TestTriggerOwnership(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	provider := connect(t, srv.Addr, trine.WithName("provider"))
	owner := connect(t, srv.Addr, trine.WithName("owner"))
	other := connect(t, srv.Addr, trine.WithName("other"))
	tp := &recordingProvider{}
	if err := provider.RegisterTriggerType(t.Context(), "webhook", "", tp); err != nil {
		t.Fatal(err)
	}
	bad := &recordingProvider{refuse: true}
	if err := provider.RegisterTriggerType(t.Context(), "picky", "", bad); err != nil {
		t.Fatal(err)
	}

	if err := owner.RegisterTrigger(t.Context(), trine.Trigger{ID: "hook", Type: "webhook", FunctionID: "owner::fn"}); err != nil {
		t.Fatalf("RegisterTrigger(hook) = %v", err)
	}
	if n := tp.registered.Load(); n != 1 {
		t.Fatalf("provider saw %d registrations, want 1", n)
	}
	err := other.UnregisterTrigger(t.Context(), "hook")
	wantCode(t, err, trine.CodeForbidden)
	err = other.RegisterTrigger(t.Context(), trine.Trigger{ID: "hook", Type: "webhook", FunctionID: "other::fn"})
	wantCode(t, err, trine.CodeConflict)
	err = owner.RegisterTrigger(t.Context(), trine.Trigger{ID: "t2", Type: "no-such-type", FunctionID: "owner::fn"})
	wantCode(t, err, trine.CodeTriggerTypeNotFound)
	err = owner.RegisterTrigger(t.Context(), trine.Trigger{ID: "t3", Type: "picky", FunctionID: "owner::fn", Config: "x"})
	wantCode(t, err, trine.CodeInvalidArgument)
	if !strings.Contains(err.Error(), "not acceptable") {
		t.Fatalf("provider's reason lost: %v", err)
	}
	_, ts := srv.Engine.Triggers()
	if len(ts) != 1 || ts[0].ID != "hook" {
		t.Fatalf("triggers = %+v, want only hook", ts)
	}
	if err := owner.UnregisterTrigger(t.Context(), "hook"); err != nil {
		t.Fatalf("owner UnregisterTrigger = %v", err)
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("provider told of the removal", func() bool { return tp.unregistered.Load() == 1 }))
}

// TestTriggerMetadata: a trigger's metadata reaches the provider of its
// type, as JSON.
func TestTriggerMetadata(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := connect(t, srv.Addr)
	got := make(chan trine.Trigger, 1)
	if err := w.RegisterTriggerType(t.Context(), "meta", "records its triggers", providerFunc(func(t trine.Trigger) { got <- t })); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(t.Context(), trine.Trigger{ID: "m1", Type: "meta", FunctionID: "f", Config: map[string]int{"n": 1}, Metadata: map[string]string{"team": "a"}}); err != nil {
		t.Fatal(err)
	}
	tr := <-got
	if md, ok := tr.Metadata.(json.RawMessage); !ok || string(md) != `{"team":"a"}` {
		t.Fatalf("provider got metadata %#v", tr.Metadata)
	}
	if err := w.RegisterTrigger(t.Context(), trine.Trigger{ID: "m2", Type: "meta", FunctionID: "f"}); err != nil {
		t.Fatal(err)
	}
	if tr := <-got; tr.Metadata != nil {
		t.Fatalf("a trigger without metadata reached the provider with %#v", tr.Metadata)
	}
}

type providerFunc func(trine.Trigger)

func (f providerFunc) RegisterTrigger(_ context.Context, t trine.Trigger) error { f(t); return nil }
func (f providerFunc) UnregisterTrigger(context.Context, trine.Trigger) error   { return nil }

// TestHandlerPanic: a panicking handler answers handler_error with the
// panic in the message and its stack in Stacktrace, and the worker serves
// on.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := connect(t, srv.Addr)
	var calls atomic.Int32
	if err := w.RegisterFunction(t.Context(), "boom", func(context.Context, json.RawMessage) (any, error) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		return "fine", nil
	}); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, srv.Addr)
	_, err := caller.Trigger(t.Context(), "boom", nil)
	var e *trine.Error
	if !errors.As(err, &e) || e.Code != trine.CodeHandlerError || e.Message != "handler panicked: boom" ||
		!strings.Contains(e.Stacktrace, "TestHandlerPanic") {
		t.Fatalf("panic answered %#v", err)
	}
	if out, err := caller.Trigger(t.Context(), "boom", nil); err != nil || string(out) != `"fine"` {
		t.Fatalf("after the panic: %s, %v", out, err)
	}
	// A stack trace from elsewhere (an iii worker's) reaches a Go caller.
	if err := srv.Engine.RegisterFunction("t::traced", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, &engine.Error{Code: "invocation_failed", Message: "thrown", Stacktrace: "Error: thrown\n    at handler (w.js:1:1)"}
	})); err != nil {
		t.Fatal(err)
	}
	_, err = caller.Trigger(t.Context(), "t::traced", nil)
	if !errors.As(err, &e) || e.Code != "invocation_failed" || e.Stacktrace != "Error: thrown\n    at handler (w.js:1:1)" {
		t.Fatalf("traced error %#v", err)
	}
}
