package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// 100,000 invocations leave nothing behind on the worker: its heap and
// goroutine count come back to where they were. (Each invocation used to
// leave a child context on the session's context.) The engine runs the
// calls of a session on goroutines it keeps for the next ones until they
// have been idle for WorkerIdle; the count comes back once they have.
func TestInvocationsLeaveNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("100k calls")
	}
	const idle = 50 * time.Millisecond
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{WorkerIdle: idle})
	w := connect(t, srv.Addr)
	if err := w.RegisterFunction(t.Context(), "noop", func(context.Context, json.RawMessage) (any, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, srv.Addr)
	run := func(n int) {
		var wg sync.WaitGroup
		const par = 32
		for p := range par {
			wg.Go(func() {
				for i := p; i < n; i += par {
					if _, err := caller.Trigger(t.Context(), "noop", nil); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	g0 := runtime.NumGoroutine()
	run(2000) // warm up buffers and pools
	h0 := heap()
	run(100_000)
	h1 := heap()
	t.Logf("heap %d → %d bytes, goroutines %d → %d right after the calls", h0, h1, g0, runtime.NumGoroutine())
	if h1 > h0+4<<20 {
		t.Errorf("heap grew by %d bytes over 100,000 invocations", h1-h0)
	}
	poll.CheckFor(t, 100*idle, func() error {
		if g := runtime.NumGoroutine(); g > g0+2 {
			return fmt.Errorf("goroutines %d → %d", g0, g)
		}
		return nil
	})
}

// ErrClosed is its own error: another unavailable error is not it.
func TestErrClosedIdentity(t *testing.T) {
	shutdown := &trine.Error{Code: trine.CodeUnavailable, Message: "engine is shutting down"}
	if errors.Is(shutdown, trine.ErrClosed) {
		t.Error("an engine shutting down is reported as ErrClosed")
	}
	if !errors.Is(trine.ErrClosed, trine.ErrUnavailable) {
		t.Error("ErrClosed no longer has code unavailable")
	}
	if !errors.Is(errors.Join(errors.New("x"), trine.ErrClosed), trine.ErrClosed) {
		t.Error("a wrapped ErrClosed is not ErrClosed")
	}
}
