package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

// TestPresenceSharedAcrossGateways: two gateways share members through
// the JetStream bucket; a reload that moves to the other gateway within
// the grace is no leave; a gateway that stops renewing its lease (closed
// here) has its members leave within the TTL, and stream::presence sees
// the same members as the gateways.
func TestPresenceSharedAcrossGateways(t *testing.T) {
	t.Parallel()
	open := func(s *stack) *natsfanout.Presence {
		p := natsfanout.NewPresence(natstest.Connect(t, s.ns), natsfanout.PresenceConfig{TTL: time.Second})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := p.Open(ctx); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := presenceStack(t, gateway.Config{PresenceGrace: time.Second})
	// The stack's gateway has no store: replace it with two that share one.
	a := s.gateway(t, gateway.Config{Presence: open(s), PresenceGrace: time.Second})
	b := s.gateway(t, gateway.Config{Presence: open(s), PresenceGrace: time.Second})
	s.m.SetPresence(a.gw)

	obs := b.dial(t, "/?user=observer", nil)
	obs.send(presenceJoin("o", true))
	must(t, names(obs.nextPresence().Event.Members) == "observer", "observer sync")
	// b writes its entry within presenceFlush; stream::presence (through
	// a, which does not watch the group) reads the bucket.
	poll.CheckFor(t, 5*time.Second, poll.Holds("the observer in the bucket", func() bool {
		return strings.Contains(s.call(t, streammodule.FnPresence, map[string]any{"stream_name": "rooms", "group_id": "lobby"}), "observer")
	}))
	ada := a.dial(t, "/?user=ada", nil)
	ada.send(presenceJoin("p", true))
	f := ada.nextPresence()
	must(t, f.Event.Type == "sync" && names(f.Event.Members) == "ada,observer", "ada's sync on the other gateway: %s", f.raw)
	f = obs.nextPresence()
	must(t, f.Event.Type == "join" && f.Event.Member.Identity == "ada", "observer sees ada join through the bucket: %s", f.raw)
	page := s.call(t, streammodule.FnPresence, map[string]any{"stream_name": "rooms", "group_id": "lobby"})
	must(t, strings.Contains(page, `"identity":"ada"`) && strings.Contains(page, `"identity":"observer"`) && strings.Contains(page, `"count":2`), "stream::presence: %s", page)

	// A reload landing on the other gateway within the grace: no leave.
	ada.c.CloseNow()
	ada2 := b.dial(t, "/?user=ada", nil)
	ada2.send(presenceJoin("p", true))
	ada2.nextPresence()
	for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); {
		select {
		case fb := <-obs.frames:
			if fr := parseFrame(t, fb); fr.Type == "presence" {
				pf := decodePresence(t, fb)
				must(t, pf.Event.Type == "update", "a reload on another gateway: %s", pf.raw)
			}
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Gateway a stops renewing (its process would have died): its members
	// go within the TTL. carol is only on a.
	carol := a.dial(t, "/?user=carol", nil)
	carol.send(presenceJoin("p", true))
	carol.nextPresence()
	for f = obs.nextPresence(); f.Event.Type != "join"; f = obs.nextPresence() {
	}
	must(t, f.Event.Member.Identity == "carol", "carol joins: %s", f.raw)
	start := time.Now()
	a.gw.Close()
	for f = obs.nextPresence(); f.Event.Type != "leave"; f = obs.nextPresence() {
	}
	must(t, f.Event.Member.Identity == "carol", "carol leaves: %s", f.raw)
	took := time.Since(start)
	must(t, took < 3*time.Second, "carol left %v after her gateway stopped; the TTL is 1s", took)
	t.Logf("members of a stopped gateway left after %v (TTL 1s)", took)
}
