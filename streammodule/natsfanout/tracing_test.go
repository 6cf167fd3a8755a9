package natsfanout_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

// TestPublishCarriesTraceparent: an event published under a span reaches
// SubscribeTraced with the span's traceparent (from the NATS header); one
// published without a span, and Subscribe's handlers, see none.
func TestPublishCarriesTraceparent(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	pub := natsfanout.NewPublisher(natstest.Connect(t, ns))
	sub := natsfanout.NewSubscriber(natstest.Connect(t, ns))
	type ev struct{ frame, tp string }
	got := make(chan ev, 4)
	plain := make(chan string, 4)
	c1, err := sub.SubscribeTraced("chat", "room", func(f []byte, tp string) { got <- ev{string(f), tp} })
	if err != nil {
		t.Fatal(err)
	}
	defer c1()
	c2, err := sub.Subscribe("chat", "room", func(f []byte) { plain <- string(f) })
	if err != nil {
		t.Fatal(err)
	}
	defer c2()
	const h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := trace.ContextWithSpanContext(context.Background(), tracing.Parse(h))
	if err := pub.Publish(ctx, "chat", "room", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), "chat", "room", []byte(`{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	for i, want := range []ev{{`{"n":1}`, h}, {`{"n":2}`, ""}} {
		select {
		case e := <-got:
			if e != want {
				t.Errorf("event %d = %+v, want %+v", i, e, want)
			}
		case <-timer.C:
			t.Fatalf("event %d never came", i)
		}
		select {
		case f := <-plain:
			if f != want.frame {
				t.Errorf("Subscribe got %s, want %s", f, want.frame)
			}
		case <-timer.C:
			t.Fatalf("event %d never reached Subscribe", i)
		}
	}
}
