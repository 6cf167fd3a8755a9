package pubsubmodule_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/pubsubmodule"
)

// TestTopicNamesAreByteExact: a topic that a transport could alter (white
// space at an end, CR/LF, NUL, tab) is refused with invalid_argument on
// publish and on subscribe, and nothing is delivered; a topic with inner
// spaces is delivered; a message whose topic header does not decode is
// not delivered.
func TestTopicNamesAreByteExact(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, pubsubmodule.Config{})
	got := make(chan string, 10)
	s := n.serve(t, "test::f", func(p []byte) { got <- string(p) })
	subscribe(t, s, "news", "test::f", "news")
	subscribe(t, s, "inner", "test::f", "news x")
	for _, topic := range []string{"news\nx", "news\r\nx", "news ", " news", "news\x00", "news\t"} {
		p, _ := json.Marshal(map[string]any{"topic": topic, "data": "refused"})
		wantCode(t, n.publish(t, string(p)), codes.InvalidArgument)
		cfg, _ := json.Marshal(map[string]string{"topic": topic})
		err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "bad", Type: "subscribe", FunctionID: "test::f", Config: cfg})
		wantCode(t, err, codes.InvalidArgument)
	}
	nc := natstest.Connect(t, ns)
	for _, v := range []string{"news x", ""} { // raw, not encoded
		msg := &nats.Msg{Subject: pubsubmodule.Subject("news x"), Header: nats.Header{}, Data: []byte(`"raw"`)}
		if v != "" {
			msg.Header.Set("Trine-Topic", v)
		}
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	// Each message is delivered before the next is published: a refused
	// or undecodable one would show up in place of the good one.
	for _, m := range []struct{ topic, data string }{{"news x", "ok"}, {"news", "last"}} {
		if err := n.publish(t, `{"topic":"`+m.topic+`","data":"`+m.data+`"}`); err != nil {
			t.Fatal(err)
		}
		select {
		case g := <-got:
			if g != `"`+m.data+`"` {
				t.Fatalf("subscriber got %s, want %q: a refused or undecodable message was delivered", g, m.data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q on %q was not delivered", m.data, m.topic)
		}
	}
}
