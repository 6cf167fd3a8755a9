package statemodule_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlptest"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/statemodule/statebus"
	"github.com/trinehq/trine/streammodule/store"
)

// TestTraceStateTriggerOnAnotherEngine: a state trigger registered on one
// engine fires for a write made through another, the event crossing NATS,
// and its call joins the write's trace: a consumer span ("trigger state")
// on the trigger's engine is the child of the write's routing span on the
// other and linked to it, and the function's routing span is its child.
func TestTraceStateTriggerOnAnotherEngine(t *testing.T) {
	t.Parallel()
	tp, rec := otlptest.NewRecorder(t)
	ns := natstest.Start(t)
	engines := make([]*engine.Engine, 2)
	for i := range engines {
		e := moduletest.StartConfig(t, "", engine.Config{DefaultTimeout: 5 * time.Second, TracerProvider: tp})
		bus := statebus.New(natstest.Connect(t, ns))
		m, err := statemodule.New(statemodule.Config{
			OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil },
			Publish:   bus.Publish, MaxEventBytes: bus.MaxPayload(), TracerProvider: tp,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Register(e); err != nil {
			t.Fatal(err)
		}
		if err := bus.Receive(m.Deliver); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close(); m.Close() })
		engines[i] = e
	}
	fired := make(chan string, 1)
	onChange(t, engines[1], "test::on", fired)
	register(t, engines[1], engine.Trigger{ID: "t", Type: statemodule.TriggerState, FunctionID: "test::on", Config: json.RawMessage(`{"scope":"s"}`)})
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	if _, err := engines[0].Trigger(ctx, engine.Call{FunctionID: statemodule.FnSet, Payload: []byte(`{"scope":"s","key":"k","value":1}`)}); err != nil {
		t.Fatal(err)
	}
	root.End()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the trigger did not fire")
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the trigger's spans end", func() bool {
		return len(otlptest.Named(rec, "test::on")) == 1 && len(otlptest.Named(rec, "trigger state")) == 1
	}))
	write, fire, fn := otlptest.Named(rec, statemodule.FnSet), otlptest.Named(rec, "trigger state")[0], otlptest.Named(rec, "test::on")[0]
	if len(write) != 1 {
		t.Fatalf("%d %s spans, want 1", len(write), statemodule.FnSet)
	}
	if fire.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("trigger span kind %v, want consumer", fire.SpanKind())
	}
	for _, l := range []struct {
		name          string
		child, parent trace.SpanContext
		got           trace.SpanContext
	}{{"trigger", fire.SpanContext(), write[0].SpanContext(), fire.Parent()}, {"function", fn.SpanContext(), fire.SpanContext(), fn.Parent()}} {
		if l.child.TraceID() != root.SpanContext().TraceID() {
			t.Errorf("%s span is in trace %v, want the write's %v", l.name, l.child.TraceID(), root.SpanContext().TraceID())
		}
		if l.got.SpanID() != l.parent.SpanID() {
			t.Errorf("%s span's parent is %v, want %v", l.name, l.got.SpanID(), l.parent.SpanID())
		}
	}
	if len(fire.Links()) != 1 || fire.Links()[0].SpanContext.SpanID() != write[0].SpanContext().SpanID() {
		t.Errorf("trigger span links %v, want the write", fire.Links())
	}
	for _, kv := range fire.Attributes() {
		if kv.Key == tracing.TrineTriggerID && kv.Value.AsString() != "t" {
			t.Errorf("trigger span %s = %q, want t", kv.Key, kv.Value.AsString())
		}
	}
}
