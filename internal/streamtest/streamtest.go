// Package streamtest runs an engine with the StreamModule (memory store)
// publishing on a real embedded NATS server, for tests of the gateway and
// of stream clients.
//
// Concurrency: a test helper. Start wires a stream module, its publisher
// and subscriber and a gateway; t.Cleanup closes them in order and they
// wait for their goroutines. The Stack is safe for concurrent use.
package streamtest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
)

// Stack is a running engine, its StreamModule and their NATS server.
type Stack struct {
	NATS   *server.Server
	Engine *engine.Engine
	Module *streammodule.Module
	// Events subscribes to the module's events on its own connection, as
	// a gateway does.
	Events *natsfanout.Subscriber
}

// Start runs a Stack until the test ends. mcfg's publisher is set here,
// and its store unless mcfg.OpenStore is set (default: in memory); the
// engine traces with mcfg.TracerProvider too.
func Start(t testing.TB, mcfg streammodule.Config) *Stack {
	t.Helper()
	ns := natstest.Start(t)
	e, err := engine.New(engine.Config{DefaultTimeout: 5 * time.Second, TracerProvider: mcfg.TracerProvider})
	if err != nil {
		t.Fatal(err)
	}
	if mcfg.OpenStore == nil {
		mcfg.OpenStore = func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }
	}
	mcfg.Publisher = natsfanout.NewPublisher(natstest.Connect(t, ns))
	m, err := streammodule.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		m.Close()
	})
	return &Stack{NATS: ns, Engine: e, Module: m, Events: natsfanout.NewSubscriber(natstest.Connect(t, ns))}
}

// Call runs fn with in as its JSON payload and fails the test on error.
func (s *Stack) Call(t testing.TB, fn string, in any) []byte {
	t.Helper()
	p, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Engine.Trigger(context.Background(), engine.Call{FunctionID: fn, Payload: p})
	if err != nil {
		t.Fatalf("%s %s: %v", fn, p, err)
	}
	return out
}
