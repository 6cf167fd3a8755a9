package gateway_test

import (
	"strconv"
	"testing"

	"github.com/trinehq/trine/gateway"
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
