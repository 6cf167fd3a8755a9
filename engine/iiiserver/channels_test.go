package iiiserver_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
)

// createChannel calls engine::channels::create as c and returns the
// invocationresult.
func (c *client) createChannel(id string) map[string]any {
	c.t.Helper()
	c.send(map[string]any{"type": "invokefunction", "invocation_id": id, "function_id": channels.FnCreate, "data": map[string]any{}})
	return c.expect("invocationresult")
}

// A connection whose policy shows it only api::* may still create channels
// (iii's carve-out), but no more than the hub's per-connection cap: the
// next create is refused, another connection still creates and uses one,
// and the first connection's channels go when it leaves.
func TestChannelsCappedPerConnection(t *testing.T) {
	t.Parallel()
	hub, err := channels.New(channels.Config{MaxConnChannels: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	s := start(t, iiiserver.Config{Channels: hub, Access: &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}})
	if err := hub.Register(s.e); err != nil {
		t.Fatal(err)
	}
	hostile := s.dial(t)
	var hostileRefs []map[string]any
	for i := range 2 {
		r := hostile.createChannel(fmt.Sprint("c", i))
		res, _ := r["result"].(map[string]any)
		if res == nil {
			t.Fatalf("create %d: %v", i, r)
		}
		hostileRefs = append(hostileRefs, res)
	}
	r := hostile.createChannel("c2")
	e, _ := r["error"].(map[string]any)
	if e == nil || !strings.Contains(fmt.Sprint(e["message"]), "--channels-max-per-connection") {
		t.Fatalf("third create: %v, want a refusal naming --channels-max-per-connection", r)
	}

	other := s.dial(t)
	r = other.createChannel("o1")
	res, _ := r["result"].(map[string]any)
	if res == nil {
		t.Fatalf("other connection's create: %v", r)
	}
	ref := func(res map[string]any, end string) string {
		m := res[end].(map[string]any)
		return fmt.Sprintf("%s/ws/channels/%s?key=%s&dir=%s", s.url, m["channel_id"], m["access_key"], m["direction"])
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	w, _, err := websocket.Dial(ctx, ref(res, "writer"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.CloseNow()
	rd, _, err := websocket.Dial(ctx, ref(res, "reader"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.CloseNow()
	if err := w.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := rd.Read(ctx); err != nil || string(b) != "hello" {
		t.Fatalf("reader got %q, %v", b, err)
	}

	// The hostile connection leaves: its channels go (their ends are 404),
	// the other's stays.
	_ = hostile.ws.Close(websocket.StatusNormalClosure, "")
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for _, res := range hostileRefs {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, resp, err := websocket.Dial(ctx, ref(res, "writer"), nil)
			if err != nil && resp != nil && resp.StatusCode == http.StatusNotFound {
				break
			}
			if c != nil {
				c.CloseNow()
			}
			if time.Now().After(deadline) {
				t.Fatalf("a channel of the departed connection is still there: %v", err)
			}
			<-tick.C
		}
	}
	if err := w.Write(ctx, websocket.MessageText, []byte("still")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := rd.Read(ctx); err != nil || string(b) != "still" {
		t.Fatalf("the other connection's channel: %q, %v", b, err)
	}
}
