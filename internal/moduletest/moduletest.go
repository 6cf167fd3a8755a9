// Package moduletest runs a real engine for the tests of a module
// (state, pubsub, cron, queue): optionally routing calls between engines
// over a real NATS, as trine engine does, and with worker sessions that
// register triggers.
//
// Concurrency: a test helper. Start returns an engine running on a
// goroutine that t.Cleanup stops and waits for; the engine is safe for
// concurrent use.
package moduletest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/natsroute"
	"github.com/trinehq/trine/internal/natstest"
)

// Start runs an engine until the test ends. With natsURL set, calls are
// routed to and from other engines on that NATS. Register the module
// after Start: cleanups run in reverse, so the module closes first.
func Start(t testing.TB, natsURL string) *engine.Engine {
	t.Helper()
	return StartConfig(t, natsURL, engine.Config{DefaultTimeout: 5 * time.Second})
}

// StartConfig is Start with the engine's Config (a TracerProvider, for
// instance); cfg.Remote is set here when natsURL is.
func StartConfig(t testing.TB, natsURL string, cfg engine.Config) *engine.Engine {
	t.Helper()
	var router *natsroute.Router
	if natsURL != "" {
		router = natsroute.New(natstest.ConnectURL(t, natsURL), nil).WithTracerProvider(cfg.TracerProvider)
		cfg.Remote = router
	}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if router != nil {
		if err := router.Start(e); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	t.Cleanup(func() {
		if router != nil {
			router.Close()
		}
		cancel()
		<-done
	})
	return e
}

// Session attaches a worker session, closed when the test ends, that
// registers triggers; the engine cannot invoke it.
func Session(t testing.TB, e *engine.Engine) *engine.Session {
	t.Helper()
	s, err := e.Attach(engine.WorkerInfo{Name: "test"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Granted attaches a session, closed when the test ends, under a
// listener policy that exposes every function and whose auth function
// answers result (an AuthResult); the engine cannot invoke it.
func Granted(t testing.TB, e *engine.Engine, result string) *engine.Session {
	t.Helper()
	auth := fmt.Sprintf("test::auth::%d", authIDs.Add(1))
	if err := e.RegisterFunction(auth, "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return []byte(result), nil
	})); err != nil {
		t.Fatal(err)
	}
	g, err := e.Authenticate(t.Context(), &engine.Access{AuthFunctionID: auth, ExposeFunctions: []engine.Filter{{Match: "*"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.AttachGranted(engine.WorkerInfo{Name: "granted"}, nopPeer{}, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var authIDs atomic.Int64

type nopPeer struct{}

func (nopPeer) Invoke(context.Context, engine.Invocation) error { return errors.New("no worker") }
func (nopPeer) Cancel(string)                                   {}
func (nopPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}
