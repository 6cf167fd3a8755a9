package queuemodule_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/queuemodule"
)

// A module registered before JetStream answers unavailable, then works
// once Open succeeds.
func TestWaitingThenOpen(t *testing.T) {
	ns := natstest.StartOptions(t, server.Options{})
	e := moduletest.Start(t, "")
	m, err := queuemodule.New(queuemodule.Config{Conn: natstest.Connect(t, ns), Queues: map[string]queuemodule.QueueConfig{"q": {}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	s := moduletest.Session(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for fn, in := range map[string]string{queuemodule.FnEnqueue: `{"queue":"q","function_id":"f"}`, queuemodule.FnDurablePublish: `{"topic":"t"}`, queuemodule.FnRedrive: `{"queue":"q"}`} {
		_, err := e.Trigger(ctx, engine.Call{FunctionID: fn, Payload: []byte(in)})
		if ae := engine.AsError(err); err == nil || ae.Code != codes.Unavailable || !strings.Contains(err.Error(), "JetStream") {
			t.Errorf("%s while waiting: %v, want unavailable", fn, err)
		}
	}
	// A durable:subscriber trigger registered meanwhile starts at Open.
	got := make(chan string, 10)
	if err := e.RegisterFunction("f", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		got <- string(c.Payload)
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterTrigger(ctx, engine.Trigger{ID: "sub", Type: queuemodule.TriggerDurable, FunctionID: "f", Config: json.RawMessage(`{"topic":"t"}`)}); err != nil {
		t.Fatalf("durable trigger while waiting: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if err := m.Open(short); err == nil {
		t.Fatal("Open without JetStream succeeded")
	}
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	natstest.StartOptions(t, server.Options{Port: port, JetStream: true})
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		octx, ocancel := context.WithTimeout(ctx, time.Second)
		err := m.Open(octx)
		ocancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Open once JetStream is up: %v", err)
		}
	}
	if _, err := e.Trigger(ctx, engine.Call{FunctionID: queuemodule.FnDurablePublish, Payload: []byte(`{"topic":"t","data":7}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if !strings.Contains(p, "7") {
			t.Errorf("subscriber got %s", p)
		}
	case <-ctx.Done():
		t.Fatal("the trigger registered while waiting got nothing")
	}
}
