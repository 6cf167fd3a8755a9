package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

func TestCloseDrainsInFlightHandlers(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := trine.RegisterWorker(srv.Addr, trine.WithCloseTimeout(5*time.Second))
	if err := w.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	if err := w.RegisterFunction(t.Context(), "job", func(ctx context.Context, _ json.RawMessage) (any, error) {
		close(started)
		select {
		case <-time.After(300 * time.Millisecond):
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, srv.Addr)
	res := make(chan error, 1)
	go func() {
		out, err := caller.Trigger(t.Context(), "job", nil)
		if err == nil && string(out) != `"done"` {
			err = errors.New("unexpected result " + string(out))
		}
		res <- err
	}()
	<-started
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := <-res; err != nil {
		t.Fatalf("in-flight call during Close = %v, want it to finish", err)
	}
	if _, err := caller.Trigger(t.Context(), "job", nil); !errors.Is(err, trine.ErrFunctionNotFound) {
		t.Fatalf("after Close, Trigger(job) = %v, want function_not_found", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if _, err := w.Trigger(t.Context(), "job", nil); !errors.Is(err, trine.ErrClosed) {
		t.Fatalf("Trigger on a closed worker = %v, want ErrClosed", err)
	}
}

func TestCloseCancelsHandlersAfterTimeout(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := trine.RegisterWorker(srv.Addr, trine.WithCloseTimeout(100*time.Millisecond))
	if err := w.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	if err := w.RegisterFunction(t.Context(), "forever", func(ctx context.Context, _ json.RawMessage) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, srv.Addr)
	go func() { _, _ = caller.Trigger(t.Context(), "forever", nil) }()
	<-started
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Close took %v with a 100ms close timeout", el)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := connect(t, srv.Addr, trine.WithConcurrency(2))
	var running, peak atomic.Int32
	if err := w.RegisterFunction(t.Context(), "limited", func(context.Context, json.RawMessage) (any, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // the handler's work
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, srv.Addr)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := caller.Trigger(t.Context(), "limited", nil); err != nil {
				t.Errorf("Trigger = %v", err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrent handlers = %d, want 2", p)
	}
}

func TestRegisterBeforeConnect(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := trine.RegisterWorker(srv.Addr)
	t.Cleanup(func() { _ = w.Close() })
	// Registration before the connection is up is kept, sent on connect and acknowledged.
	if err := w.RegisterFunction(t.Context(), "early", func(context.Context, json.RawMessage) (any, error) { return "up", nil }); err != nil {
		t.Fatalf("RegisterFunction before Connect = %v", err)
	}
	if err := w.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	out, err := w.Trigger(t.Context(), "early", nil)
	if err != nil || string(out) != `"up"` {
		t.Fatalf("Trigger(early) = %s, %v", out, err)
	}
}

func TestConnectFailsWithoutEngine(t *testing.T) {
	t.Parallel()
	w := trine.RegisterWorker("127.0.0.1:1", trine.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := w.Connect(ctx); !errors.Is(err, trine.ErrDeadlineExceeded) {
		t.Fatalf("Connect to nothing = %v, want deadline_exceeded", err)
	}
	if _, err := w.Trigger(ctx, "x", nil); !errors.Is(err, trine.ErrUnavailable) {
		t.Fatalf("Trigger while disconnected = %v, want unavailable", err)
	}
	for name, opt := range map[string]trine.Option{
		"NegativeConcurrency": trine.WithConcurrency(-1),
		"EmptyName":           trine.WithName(""),
		"UnprintableName":     trine.WithName("a\nb"),
		"BadBackoff":          trine.WithReconnectBackoff(time.Second, time.Millisecond),
	} {
		bad := trine.RegisterWorker("127.0.0.1:1", opt)
		if err := bad.Connect(t.Context()); !errors.Is(err, trine.ErrInvalidArgument) {
			t.Errorf("%s: Connect = %v, want invalid_argument", name, err)
		}
		if err := bad.RegisterFunction(ctx, "f", func(context.Context, json.RawMessage) (any, error) { return nil, nil }); !errors.Is(err, trine.ErrInvalidArgument) {
			t.Errorf("%s: RegisterFunction = %v, want invalid_argument", name, err)
		}
		_ = bad.Close()
	}
}

// TestAddressListFailover: a worker given several engine addresses connects
// to whichever answers and, when that engine dies, comes back on another one
// with its functions, with no user code.
func TestAddressListFailover(t *testing.T) {
	t.Parallel()
	a, b := startEngine(t), startEngine(t)
	w := connect(t, "127.0.0.1:1,"+a.Addr+","+b.Addr) // the first address refuses connections
	if err := w.RegisterFunction(t.Context(), "ha::ping", func(context.Context, json.RawMessage) (any, error) { return "pong", nil }); err != nil {
		t.Fatal(err)
	}
	first, second := a, b
	if len(a.Engine.Workers()) == 0 {
		first, second = b, a
	}
	if len(first.Engine.Workers()) != 1 {
		t.Fatalf("worker on neither engine: a=%d b=%d", len(a.Engine.Workers()), len(b.Engine.Workers()))
	}
	first.Kill()
	poll.CheckFor(t, 10*time.Second, poll.Holds("the function to come back on the other engine", func() bool {
		out, err := second.Engine.Trigger(t.Context(), engine.Call{FunctionID: "ha::ping"})
		return err == nil && string(out) == `"pong"`
	}))
}

// TestConnectedFollowsTheSession: Connected is true while a session is up
// and false once it is lost (Connect only waits for the first one), and a
// call made meanwhile says why the last attempt to connect failed.
func TestConnectedFollowsTheSession(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	p := enginetest.NewProxy(t, srv.Addr)
	w := connect(t, p.Addr)
	if !w.Connected() {
		t.Fatal("Connected() = false with a session up")
	}
	p.Close()
	poll.CheckFor(t, 10*time.Second, poll.Holds("Connected() to turn false", func() bool { return !w.Connected() }))
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := w.Trigger(ctx, "x", nil)
	wantCode(t, err, trine.CodeUnavailable)
	if !strings.Contains(err.Error(), "the last attempt failed: "+p.Addr) {
		t.Fatalf("Trigger while disconnected = %v, want the last attempt's failure", err)
	}
}

// TestSessionsCountReconnects: Sessions counts the sessions established,
// one more after a lost link comes back.
func TestSessionsCountReconnects(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	p := enginetest.NewProxy(t, srv.Addr)
	w := connect(t, p.Addr)
	if n := w.Sessions(); n != 1 {
		t.Fatalf("Sessions() = %d after connecting, want 1", n)
	}
	p.Partition()
	poll.CheckFor(t, 10*time.Second, poll.Holds("Connected() to turn false", func() bool { return !w.Connected() }))
	p.Heal()
	poll.CheckFor(t, 10*time.Second, poll.Holds("a second session", func() bool { return w.Connected() && w.Sessions() == 2 }))
}
