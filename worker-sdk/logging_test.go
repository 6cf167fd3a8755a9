package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/logtest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// deadWorker is a worker logging to log, retrying every 1-2 ms, of a
// loopback address nothing listens on.
func deadWorker(t *testing.T, log *slog.Logger) (w *trine.Worker, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = lis.Addr().String()
	lis.Close()
	w = trine.RegisterWorker(addr, trine.WithLogger(log), trine.WithReconnectBackoff(time.Millisecond, 2*time.Millisecond))
	t.Cleanup(func() { w.Close() })
	return w, addr
}

// TestDeadEngineIsLogged: a worker pointed at an address where no engine
// listens says so at warn level, with the address and the error, once
// and then at most once per interval however fast it retries; the error
// of a Connect that gave up says what it was doing.
func TestDeadEngineIsLogged(t *testing.T) {
	t.Parallel()
	logs, log := logtest.New()
	w, addr := deadWorker(t, log)
	poll.CheckFor(t, 10*time.Second, poll.Holds("a warning", func() bool { return len(logs.Records("cannot connect to the engine; retrying")) > 0 }))
	r := logs.Records("cannot connect to the engine; retrying")[0]
	if r["level"] != "WARN" || r["address"] != addr || !strings.Contains(r["error"].(string), addr) {
		t.Errorf("warning %v, want level WARN, address %s and an error naming it", r, addr)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := w.Connect(ctx)
	if !errors.Is(err, trine.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "connecting to the engine at "+addr) ||
		!strings.Contains(err.Error(), "attempts") {
		t.Errorf("Connect() = %v, want deadline_exceeded naming what it was doing", err)
	}
	if n := len(logs.Records("cannot connect to the engine; retrying")); n != 1 {
		t.Errorf("%d warnings within 300 ms of retries every 1-2 ms, want 1 (rate-limited)", n)
	}
}

// TestCancelSaysWhatItWasDoing: a cancelled Connect names the engine it
// was connecting to, and a cancelled Trigger the call it was waiting for.
func TestCancelSaysWhatItWasDoing(t *testing.T) {
	t.Parallel()
	_, log := logtest.New()
	w, addr := deadWorker(t, log)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Connect(ctx); !errors.Is(err, trine.ErrCancelled) || !strings.Contains(err.Error(), "cancelled while connecting to the engine at "+addr) {
		t.Errorf("Connect(cancelled) = %v", err)
	}

	e := startEngine(t)
	busy := connect(t, e.Addr)
	started := make(chan struct{})
	if err := busy.RegisterFunction(t.Context(), "test::slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, e.Addr)
	ctx, cancel = context.WithCancel(t.Context())
	go func() { <-started; cancel() }()
	_, err := caller.Trigger(ctx, "test::slow", nil)
	if !errors.Is(err, trine.ErrCancelled) || !strings.Contains(err.Error(), "test::slow") || !strings.Contains(err.Error(), "waiting for its answer") {
		t.Errorf("Trigger(cancelled) = %v, want cancelled naming the call", err)
	}
}
