package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/cronmodule"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/pubsubmodule"
	"github.com/trinehq/trine/queuemodule"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/streammodule/store"
	trine "github.com/trinehq/trine/worker-sdk"
)

// startModules runs an engine with the state, pubsub, queue and cron
// modules on a real NATS, wired as trine engine wires them.
func startModules(t *testing.T) *enginetest.Server {
	t.Helper()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{})
	e := srv.Engine
	st, err := statemodule.New(statemodule.Config{OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ns := natstest.Start(t)
	ps, err := pubsubmodule.New(pubsubmodule.Config{Conn: natstest.Connect(t, ns)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	q, err := queuemodule.New(queuemodule.Config{Conn: natstest.Connect(t, ns), Queues: map[string]queuemodule.QueueConfig{"jobs": {}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := q.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	c, err := cronmodule.New(cronmodule.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv
}

type cart struct {
	Items int    `json:"items"`
	Owner string `json:"owner"`
}

func TestStateHelper(t *testing.T) {
	t.Parallel()
	srv := startModules(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()
	carts := trine.NewState[cart](w, "carts")
	ch, err := carts.Set(ctx, "u1", cart{Items: 1, Owner: "ann"})
	if err != nil || ch.Old != nil || ch.New.Items != 1 || ch.Seq != 1 {
		t.Fatalf("Set: %+v %v", ch, err)
	}
	v, seq, ok, err := carts.Get(ctx, "u1")
	if err != nil || !ok || v.Owner != "ann" || seq != 1 {
		t.Fatalf("Get: %+v %d %v %v", v, seq, ok, err)
	}
	if _, _, ok, err := carts.Get(ctx, "nobody"); ok || err != nil {
		t.Fatalf("Get of a missing key: %v %v", ok, err)
	}
	ch, err = carts.Update(ctx, "u1", []trine.UpdateOp{trine.OpIncrement("items", 2)}, trine.WithIfSeq(1))
	if err != nil || ch.Old.Items != 1 || ch.New.Items != 3 {
		t.Fatalf("Update: %+v %v", ch, err)
	}
	if _, err := carts.Set(ctx, "u1", cart{}, trine.WithIfSeq(1)); !errors.Is(err, trine.ErrConflict) {
		t.Fatalf("a stale IfSeq: %v", err)
	}
	carts.Set(ctx, "u2", cart{Items: 9})
	p, err := carts.List(ctx, trine.WithLimit(1))
	if err != nil || len(p.Items) != 1 || p.Items[0].ID != "u1" || !p.More {
		t.Fatalf("List: %+v %v", p, err)
	}
	scopes, err := trine.StateScopes(ctx, w)
	if err != nil || len(scopes) != 1 || scopes[0] != "carts" {
		t.Fatalf("StateScopes: %v %v", scopes, err)
	}
	old, _, err := carts.Delete(ctx, "u2")
	if err != nil || old == nil || old.Items != 9 {
		t.Fatalf("Delete: %+v %v", old, err)
	}
	big := make([]byte, 600<<10)
	for i := range big {
		big[i] = 'x'
	}
	if _, err := trine.NewState[string](w, "big").Set(ctx, "k", string(big)); !errors.Is(err, trine.ErrValueTooLarge) {
		t.Fatalf("a value over the limit: %v", err)
	}
}

func TestCallGeneric(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()
	if err := trine.RegisterFunctionTyped(ctx, w, "math::add", func(_ context.Context, in struct{ A, B int }) (int, error) { return in.A + in.B, nil }); err != nil {
		t.Fatal(err)
	}
	sum, err := trine.Call[int](ctx, w, "math::add", map[string]int{"a": 2, "b": 3})
	if err != nil || sum != 5 {
		t.Fatalf("Call[int] = %d, %v", sum, err)
	}
	if _, err := trine.Call[string](ctx, w, "math::add", map[string]int{"a": 2}); !errors.Is(err, trine.ErrInternal) {
		t.Fatalf("a result that does not decode: %v", err)
	}
	raw, err := trine.Call[json.RawMessage](ctx, w, "math::add", map[string]int{"a": 1})
	if err != nil || string(raw) != "1" {
		t.Fatalf("Call[json.RawMessage] = %s, %v", raw, err)
	}
}

func TestPubsubQueueAndCronHelpers(t *testing.T) {
	t.Parallel()
	srv := startModules(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()
	type order struct{ ID int }
	got := make(chan string, 10)
	if err := trine.SubscribeTopic(ctx, w, "orders", "test::on_order", func(_ context.Context, o order) error {
		got <- "topic"
		if o.ID != 7 {
			t.Errorf("order %+v", o)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterFunction(ctx, "test::durable", func(context.Context, json.RawMessage) (any, error) { got <- "durable"; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(ctx, trine.Trigger{ID: "d", Type: trine.TriggerDurableTopic, FunctionID: "test::durable",
		Config: trine.DurableTopicConfig{Topic: "orders", QueueConfig: &trine.QueueConfig{MaxRetries: 2}}}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	if err := w.RegisterFunction(ctx, "test::job", func(_ context.Context, p json.RawMessage) (any, error) {
		got <- "job:" + string(p)
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterFunction(ctx, "test::tick", func(_ context.Context, p json.RawMessage) (any, error) {
		var ev trine.CronEvent
		json.Unmarshal(p, &ev)
		if ev.Trigger == "cron" && ev.JobID == "tick" {
			once.Do(func() { got <- "cron" })
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(ctx, trine.Trigger{ID: "tick", Type: trine.TriggerCron, FunctionID: "test::tick", Config: trine.CronConfig{Expression: "* * * * * *"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(ctx, "orders", order{ID: 7}); err != nil {
		t.Fatal(err)
	}
	if id, err := w.PublishDurable(ctx, "orders", order{ID: 8}); err != nil || id == "" {
		t.Fatalf("PublishDurable: %q %v", id, err)
	}
	if id, err := w.Enqueue(ctx, "jobs", "test::job", 42); err != nil || len(id) != 36 {
		t.Fatalf("Enqueue: %q %v", id, err)
	}
	if _, err := w.Enqueue(ctx, "nope", "test::job", 1); !errors.Is(err, trine.ErrEnqueueError) {
		t.Fatalf("Enqueue on an unknown queue: %v", err)
	}
	want := map[string]bool{"topic": true, "durable": true, "job:42": true, "cron": true}
	deadline := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case g := <-got:
			delete(want, g)
		case <-deadline:
			t.Fatalf("still waiting for %v", want)
		}
	}
}
