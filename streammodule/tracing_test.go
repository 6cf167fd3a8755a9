package streammodule_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlptest"
	"github.com/trinehq/trine/streammodule"
)

// TestTraceStreamTriggerFollowsItsWrite: the call a stream trigger makes
// for a change joins the trace of the write that committed it. A consumer
// span ("trigger <stream>", messaging conventions) is the child of the
// store commit and linked to it; the condition's and the function's
// routing spans are its children, and the function runs under them.
func TestTraceStreamTriggerFollowsItsWrite(t *testing.T) {
	t.Parallel()
	tp, rec := otlptest.NewRecorder(t)
	v := start(t, streammodule.Config{TracerProvider: tp})
	handled := make(chan trace.SpanContext, 1)
	if err := v.e.RegisterFunction("test::on", "", engine.HandlerFunc(func(ctx context.Context, _ engine.Call) ([]byte, error) {
		handled <- trace.SpanContextFromContext(ctx)
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := v.e.RegisterFunction("test::yes", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return []byte("true"), nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := attach(t, v.e).RegisterTrigger(context.Background(), engine.Trigger{ID: "t", Type: streammodule.TriggerStream, FunctionID: "test::on",
		Config: json.RawMessage(`{"stream_name":"chat","condition_function_id":"test::yes"}`)}); err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	if _, err := v.e.Trigger(ctx, engine.Call{FunctionID: streammodule.FnSet, Payload: []byte(`{"stream_name":"chat","group_id":"room","item_id":"m1","data":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	root.End()
	var inHandler trace.SpanContext
	select {
	case inHandler = <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the trigger did not fire")
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the trigger's spans end", func() bool {
		return len(otlptest.Named(rec, "test::on")) == 1 && len(otlptest.Named(rec, "trigger chat")) == 1
	}))
	one := func(name string) sdktrace.ReadOnlySpan {
		t.Helper()
		got := otlptest.Named(rec, name)
		if len(got) != 1 {
			t.Fatalf("%d %q spans, want 1", len(got), name)
		}
		return got[0]
	}
	commit, fire := one("commit chat"), one("trigger chat")
	cond, fn := one("test::yes"), one("test::on")
	if fire.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("trigger span kind %v, want consumer", fire.SpanKind())
	}
	for _, l := range []struct {
		name          string
		child, parent sdktrace.ReadOnlySpan
	}{{"trigger", fire, commit}, {"condition", cond, fire}, {"function", fn, fire}} {
		if l.child.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("%s span is in trace %v, want the write's %v", l.name, l.child.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
		if l.child.Parent().SpanID() != l.parent.SpanContext().SpanID() {
			t.Errorf("%s span's parent is %v, want %s", l.name, l.child.Parent().SpanID(), l.parent.Name())
		}
	}
	if len(fire.Links()) != 1 || fire.Links()[0].SpanContext.SpanID() != commit.SpanContext().SpanID() {
		t.Errorf("trigger span links %v, want the commit", fire.Links())
	}
	attrs := map[string]string{}
	for _, kv := range fire.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	for k, want := range map[string]string{string(tracing.TrineTriggerID): "t", string(tracing.TrineFunctionID): "test::on",
		string(tracing.MessagingDestination): "chat", string(tracing.MessagingOperation): "process"} {
		if attrs[k] != want {
			t.Errorf("trigger span %s = %q, want %q", k, attrs[k], want)
		}
	}
	if inHandler.SpanID() != fn.SpanContext().SpanID() {
		t.Errorf("the function ran under span %v, want its routing span", inHandler.SpanID())
	}
}
