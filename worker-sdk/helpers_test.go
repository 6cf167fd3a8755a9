package trine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	trine "github.com/trinehq/trine/worker-sdk"
)

func startEngine(t *testing.T) *enginetest.Server {
	return enginetest.Start(t, engine.Config{}, grpcserver.Config{})
}

// connect starts a worker on addr, waits for its connection and closes it
// when the test ends.
func connect(t *testing.T, addr string, opts ...trine.Option) *trine.Worker {
	t.Helper()
	opts = append([]trine.Option{trine.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	w := trine.RegisterWorker(addr, opts...)
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	return w
}

func wantCode(t *testing.T, err error, code trine.Code) {
	t.Helper()
	var te *trine.Error
	if !errors.As(err, &te) {
		t.Fatalf("error = %v (%T), want *trine.Error with code %s", err, err, code)
	}
	if te.Code != code {
		t.Fatalf("error code = %s (%v), want %s", te.Code, err, code)
	}
}

type engineFunction = engine.FunctionStatus
