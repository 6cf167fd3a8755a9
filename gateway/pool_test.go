package gateway_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
)

// One live event for many sockets reaches the writer pool in a few
// hand-offs of many sockets each, not one hand-off (a lock, a signal, a
// wake-up) per socket; every socket still gets the event, in order.
func TestEventReachesThePoolInBatches(t *testing.T) {
	const n = 300
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = s.dial(t, groupPath("s", "g"), nil)
		must(t, cs[i].read().kind() == "sync", "sync")
	}
	for round := range 3 {
		before := gateway.PoolHandoffs(s.gw)
		s.set(t, "s", "g", "x", round)
		for i, c := range cs {
			f := c.read()
			must(t, string(f.event(t).Data) == strconv.Itoa(round), "client %d: %s", i, f.Raw)
		}
		h := gateway.PoolHandoffs(s.gw) - before
		t.Logf("round %d: %d sockets in %d hand-offs", round, n, h)
		must(t, h <= n/32, "round %d: %d hand-offs for %d sockets", round, h, n)
	}
}

// A socket that fell behind (its writes went to a goroutine of its own,
// under a write deadline) and caught up goes back to the pool, and goes on
// getting events after that deadline has passed.
func TestSocketThatCaughtUpOutlivesItsWriteDeadline(t *testing.T) {
	const writeTimeout = 2 * time.Second
	s := newStack(t, gateway.Config{WriteTimeout: writeTimeout, QueueBytes: 64 << 20}, streammodule.Config{})
	nc := rawUpgrade(t, s, groupPath("s", "g"))
	r := newFrameReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	phase := "the sync"
	next := func() string {
		t.Helper()
		for {
			op, payload, err := r.next()
			if err != nil {
				t.Fatalf("socket ended reading %s: %v", phase, err)
			}
			if op == 0x1 {
				return string(payload)
			}
		}
	}
	must(t, strings.Contains(next(), `"type":"sync"`), "sync first")
	// 5 MiB while the client reads nothing: more than the socket buffers
	// hold, so the pool hands the socket to a writer of its own.
	pad := strings.Repeat("x", 64<<10)
	const big = 80
	for range big {
		s.set(t, "s", "g", "big", pad)
	}
	phase = "the big events"
	for i := range big {
		must(t, strings.Contains(next(), pad), "big event %d", i)
	}
	caughtUp := time.Now()
	poll.CheckFor(t, 5*time.Second, poll.Holds("the write deadline to pass", func() bool {
		return time.Since(caughtUp) > writeTimeout+writeTimeout/2
	}))
	phase = "the events after the deadline"
	for i := range 3 {
		s.set(t, "s", "g", "x", i)
		f := next()
		must(t, strings.Contains(f, `"data":`+strconv.Itoa(i)+`}`), "event %d: %.200s", i, f)
	}
}
