package trine_test

import (
	"context"
	"encoding/json"
	"errors"
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

// TestReplicaBalancingAndFailover: three workers serve one function; calls
// spread over all three; one replica's connection is cut mid-run. Every call
// either succeeds or, if it was in flight on the dead replica, fails at once
// with worker_disconnected; the other replicas keep serving.
func TestReplicaBalancingAndFailover(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	proxy := enginetest.NewProxy(t, srv.Addr) // the doomed replica reaches the engine through it
	var served [3]atomic.Int64
	var inflightDoomed atomic.Int64
	stop := make(chan struct{})
	for i := range 3 {
		addr := srv.Addr
		if i == 0 {
			addr = proxy.Addr
		}
		w := connect(t, addr, trine.WithName("replica"))
		if err := w.RegisterFunction(t.Context(), "work", func(ctx context.Context, in json.RawMessage) (any, error) {
			served[i].Add(1)
			if i == 0 {
				inflightDoomed.Add(1)
				defer inflightDoomed.Add(-1)
			}
			select { // a little work, so calls overlap
			case <-time.After(2 * time.Millisecond):
			case <-ctx.Done():
			case <-stop:
			}
			return i, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if fs := srv.Engine.Functions(); !hasReplicas(fs, "work", 3) {
		t.Fatalf("functions = %+v, want work with 3 replicas", fs)
	}
	caller := connect(t, srv.Addr)

	const callers, perCaller = 16, 60
	var ok, gone atomic.Int64
	var slowFail atomic.Int64
	var other sync.Map
	var wg sync.WaitGroup
	var killed atomic.Bool
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perCaller {
				if c == 0 && n == perCaller/3 {
					proxy.Close() // kill replica 0 mid-run; it cannot reconnect
					killed.Store(true)
				}
				start := time.Now()
				_, err := caller.Trigger(t.Context(), "work", n)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, trine.ErrWorkerDisconnected):
					gone.Add(1)
					if time.Since(start) > time.Second {
						slowFail.Add(1)
					}
				default:
					other.Store(err.Error(), true)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	other.Range(func(k, _ any) bool { t.Errorf("unexpected call error: %v", k); return true })
	total := int64(callers * perCaller)
	if ok.Load()+gone.Load() != total {
		t.Fatalf("ok %d + worker_disconnected %d != %d calls", ok.Load(), gone.Load(), total)
	}
	// Only calls in flight on the killed replica may fail: at most one per caller.
	if gone.Load() > callers {
		t.Fatalf("%d calls failed with worker_disconnected; at most %d were in flight", gone.Load(), callers)
	}
	if slowFail.Load() > 0 {
		t.Fatalf("%d calls took over a second to learn their worker was gone", slowFail.Load())
	}
	for i := range served {
		if served[i].Load() == 0 {
			t.Fatalf("replica %d served no calls: %d/%d/%d", i, served[0].Load(), served[1].Load(), served[2].Load())
		}
	}
	// The survivors split the load.
	if served[1].Load() < total/6 || served[2].Load() < total/6 {
		t.Fatalf("unbalanced: served %d/%d/%d", served[0].Load(), served[1].Load(), served[2].Load())
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("the dead replica to leave the set", func() bool {
		return hasReplicas(srv.Engine.Functions(), "work", 2)
	}))
	t.Logf("served %d/%d/%d, ok %d, worker_disconnected %d", served[0].Load(), served[1].Load(), served[2].Load(), ok.Load(), gone.Load())
}

func TestDisconnectFailsInFlightAtOnce(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	proxy := enginetest.NewProxy(t, srv.Addr)
	w := connect(t, proxy.Addr)
	started := make(chan struct{}, 1)
	if err := w.RegisterFunction(t.Context(), "stuck", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, srv.Addr)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err := caller.Trigger(ctx, "stuck", nil)
		errc <- err
	}()
	<-started
	cut := time.Now()
	proxy.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, trine.ErrWorkerDisconnected) {
			t.Fatalf("Trigger = %v, want worker_disconnected", err)
		}
		if el := time.Since(cut); el > 500*time.Millisecond {
			t.Fatalf("caller learned of the disconnect after %v", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call waited for its deadline instead of failing at once")
	}
}

func hasReplicas(fs []engineFunction, id string, n int) bool {
	for _, f := range fs {
		if f.FunctionID == id {
			return f.Replicas == n
		}
	}
	return n == 0
}

// TestKeepaliveDetectsHungWorker: a worker whose connection goes silent (no
// FIN, no RST) is detected by the engine's keepalive pings and its in-flight
// calls fail with worker_disconnected long before their deadline.
func TestKeepaliveDetectsHungWorker(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{KeepaliveTime: time.Second, KeepaliveTimeout: 500 * time.Millisecond})
	proxy := enginetest.NewProxy(t, srv.Addr)
	w := connect(t, proxy.Addr, trine.WithCloseTimeout(time.Second))
	started := make(chan struct{}, 1)
	if err := w.RegisterFunction(t.Context(), "hung", func(ctx context.Context, _ json.RawMessage) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := srv.Engine.Trigger(context.Background(), engine.Call{FunctionID: "hung", Timeout: 30 * time.Second})
		errc <- err
	}()
	<-started
	frozen := time.Now()
	proxy.Freeze()
	select {
	case err := <-errc:
		if !errors.Is(err, engine.ErrWorkerDisconnected) {
			t.Fatalf("call to a hung worker = %v, want worker_disconnected", err)
		}
		t.Logf("hung worker detected after %v", time.Since(frozen))
	case <-time.After(10 * time.Second):
		t.Fatal("hung worker not detected within 10s")
	}
	proxy.Close() // let the worker's own Close finish promptly
}
