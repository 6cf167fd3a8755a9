package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

// TestPresenceNoGhostAfterPartition: gateway a loses its NATS link,
// gateway b stops for good meanwhile, and a's link comes back after
// more than the TTL (the bucket's expiry marker has itself expired): b's
// members leave a's view within the TTL all the same, and stay gone.
func TestPresenceNoGhostAfterPartition(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	proxy := enginetest.NewProxy(t, s.ns.Addr().String())
	ncA, err := nats.Connect("nats://"+proxy.Addr, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncA.Close)
	a := s.gateway(t, gateway.Config{Presence: openPresence(t, ncA, ttl), PresenceGrace: -1})
	b := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, s.ns), ttl), PresenceGrace: -1})

	obs := a.dial(t, "/?user=observer", nil)
	obs.send(presenceJoin("o", true))
	obs.nextPresence()
	carol := b.dial(t, "/?user=carol", nil)
	carol.send(presenceJoin("p", true))
	carol.nextPresence()
	f := obs.nextPresence()
	must(t, f.Event.Type == "join" && f.Event.Member.Identity == "carol", "carol joins: %s", f.raw)

	proxy.Partition()
	start := time.Now()
	b.gw.Close() // b's process dies: it never renews or deletes its entry
	f = obs.nextPresence()
	took := time.Since(start)
	must(t, f.Event.Type == "leave" && f.Event.Member.Identity == "carol", "carol leaves: %s", f.raw)
	must(t, took < 4*ttl, "carol left %v after b stopped; the TTL is %v", took, ttl)
	t.Logf("b's members left a's view %v after b stopped, a cut off from NATS (TTL %v)", took, ttl)
	// Past the TTL of the entry and of its marker, the link comes back.
	poll.CheckFor(t, 10*time.Second, poll.Holds("a while past twice the TTL", func() bool { return time.Since(start) > 3*ttl }))
	proxy.Heal()
	poll.CheckFor(t, 10*time.Second, poll.Holds("a reconnected", ncA.IsConnected))
	// A new member on a third gateway is seen: a's watch works again.
	c := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, s.ns), ttl), PresenceGrace: -1})
	dave := c.dial(t, "/?user=dave", nil)
	dave.send(presenceJoin("p", true))
	dave.nextPresence()
	for f = obs.nextPresence(); f.Event.Type != "join"; f = obs.nextPresence() {
		must(t, f.Event.Member == nil || f.Event.Member.Identity != "carol", "carol back: %s", f.raw)
	}
	must(t, f.Event.Member.Identity == "dave", "dave joins: %s", f.raw)
	obs.send(map[string]any{"type": "presence", "data": map[string]any{"subscriptionId": "o"}})
	f = obs.nextPresence()
	must(t, f.Event.Type == "page" && names(f.Event.Members) == "dave,observer", "no ghost: %s", f.raw)
}

// openPresence opens a presence store on nc with ttl.
func openPresence(t *testing.T, nc *nats.Conn, ttl time.Duration) *natsfanout.Presence {
	t.Helper()
	p := natsfanout.NewPresence(nc, natsfanout.PresenceConfig{TTL: ttl})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPresenceLargeGroupAcrossGateways: a gateway's members of a group
// whose entry would pass the NATS max payload (64 KiB here, as 1 MiB is
// at about 1,000 members with 1 KiB of meta) are all seen by another
// gateway and by stream::presence.
func TestPresenceLargeGroupAcrossGateways(t *testing.T) {
	t.Parallel()
	const members = 120 // about 130 KiB of meta: two max payloads
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	ns := natstest.StartOptions(t, server.Options{JetStream: true, MaxPayload: 64 << 10})
	a := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, ns), 5*time.Second), PresenceGrace: -1})
	b := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, ns), 5*time.Second), PresenceGrace: -1})
	c := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, ns), 5*time.Second), PresenceGrace: -1})
	s.m.SetPresence(c.gw) // c watches no group: stream::presence reads the bucket
	meta := map[string]any{"pad": strings.Repeat("x", 1000)}
	for i := range members {
		m := b.dial(t, fmt.Sprintf("/?user=m%03d", i), nil)
		m.send(presenceJoin("p", map[string]any{"meta": meta}))
		m.nextPresence()
	}
	obs := a.dial(t, "/?user=observer", nil)
	obs.send(presenceJoin("o", true))
	seen := map[string]bool{}
	for len(seen) < members+1 {
		f := obs.nextPresence()
		switch f.Event.Type {
		case "sync":
			clear(seen)
			for _, m := range f.Event.Members {
				seen[m.Identity] = true
			}
		case "join":
			seen[f.Event.Member.Identity] = true
		}
	}
	var got struct {
		Count int `json:"count"`
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("stream::presence counts every member", func() bool {
		_ = json.Unmarshal([]byte(s.call(t, streammodule.FnPresence, map[string]any{"stream_name": "rooms", "group_id": "lobby", "limit": 1})), &got)
		return got.Count == members+1
	}))
	must(t, b.gw.Stats().PresenceWriteErrors == 0, "write errors: %+v", b.gw.Stats())
}

// TestPresenceWatchesCostNoConsumers: a gateway watching many groups'
// presence, and stream::presence reading groups nobody watches, hold no
// JetStream consumer once their listings are done, so the number of
// watched groups is not bounded by the server's consumer limit; members
// are still shared in every group.
func TestPresenceWatchesCostNoConsumers(t *testing.T) {
	t.Parallel()
	const groups, perConn = 160, 16
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	a := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, s.ns), 5*time.Second), PresenceGrace: -1})
	b := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, s.ns), 5*time.Second), PresenceGrace: -1})
	s.m.SetPresence(b.gw)
	var obs *client
	for i := range groups {
		if i%perConn == 0 {
			obs = a.dial(t, "/?user=observer", nil)
		}
		obs.send(join(fmt.Sprintf("g%d", i), "rooms", fmt.Sprintf("g%d", i), "presence", true))
		obs.nextPresence()
	}
	js, err := jetstream.New(natstest.Connect(t, s.ns))
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		st, err := js.Stream(t.Context(), "KV_"+natsfanout.DefaultPresenceBucket)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	// stream::presence of groups b does not watch lists them from the bucket.
	for i := range 20 {
		out := s.call(t, streammodule.FnPresence, map[string]any{"stream_name": "rooms", "group_id": fmt.Sprintf("g%d", i)})
		must(t, strings.Contains(out, "observer"), "stream::presence of g%d: %s", i, out)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("no consumers left", func() bool { return consumers() == 0 }))
	// Changes still travel: a member on b of the last group reaches a.
	m := b.dial(t, "/?user=mia", nil)
	last := fmt.Sprintf("g%d", groups-1)
	m.send(join("p", "rooms", last, "presence", true))
	m.nextPresence()
	for {
		f := obs.nextPresence()
		if f.Event.Type == "join" {
			must(t, f.Event.Member.Identity == "mia" && f.SubscriptionID == last, "join: %s", f.raw)
			break
		}
	}
	t.Logf("%d groups watched, %d consumers on the presence stream", groups, consumers())
}

// slowPresence is a presence store whose writes take a round trip of
// delay, as to a distant NATS cluster.
type slowPresence struct {
	*natsfanout.Presence
	delay time.Duration
	puts  atomic.Int64
}

func (p *slowPresence) Put(ctx context.Context, stream, group string, chunks [][]byte) error {
	p.puts.Add(1)
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.Presence.Put(ctx, stream, group, chunks)
}

// TestPresenceManyGroupsRenewedWithinTTL: a gateway that is a member of
// 600 groups, with writes taking 5 ms each (3 s in a row, 1.5 TTLs),
// renews every entry within the TTL: its member in the last group never
// leaves another gateway's view.
func TestPresenceManyGroupsRenewedWithinTTL(t *testing.T) {
	// Not parallel: it measures write throughput against the TTL. One
	// write after another, a heartbeat's 600 writes take 9 s, past the
	// 6 s TTL; 32 at a time they take about 0.3 s, leaving seconds of
	// headroom for a starved machine before the next heartbeat is late.
	const groups, ttl = 600, 6 * time.Second
	s := presenceStack(t, gateway.Config{PresenceGrace: -1})
	slow := &slowPresence{Presence: openPresence(t, natstest.Connect(t, s.ns), ttl), delay: 15 * time.Millisecond}
	a := s.gateway(t, gateway.Config{Presence: slow, PresenceGrace: -1, PresenceMaxPerConn: groups, MaxSubscriptions: groups})
	b := s.gateway(t, gateway.Config{Presence: openPresence(t, natstest.Connect(t, s.ns), ttl), PresenceGrace: -1})
	obs := b.dial(t, "/?user=observer", nil)
	last := fmt.Sprintf("g%d", groups-1)
	obs.send(join("o", "rooms", last, "presence", true))
	obs.nextPresence()
	m := a.dial(t, "/?user=mia", nil)
	done := make(chan struct{})
	go func() { // mia reads her frames, so she is no slow consumer
		for {
			select {
			case <-m.frames:
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	for i := range groups {
		m.send(join(fmt.Sprintf("g%d", i), "rooms", fmt.Sprintf("g%d", i), "presence", true))
	}
	for f := obs.nextPresence(); f.Event.Type != "join"; f = obs.nextPresence() {
	}
	start := time.Now()
	for deadline := start.Add(2 * ttl); time.Now().Before(deadline); {
		select {
		case fb := <-obs.frames:
			if fr := parseFrame(t, fb); fr.Type == "presence" {
				pf := decodePresence(t, fb)
				must(t, pf.Event.Type != "leave", "mia left after %v (%d writes): %s", time.Since(start), slow.puts.Load(), pf.raw)
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("%d groups, %v a write: %d writes in %v, no leave", groups, slow.delay, slow.puts.Load(), time.Since(start))
}
