package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// countingBackend counts the snapshot reads of the module it wraps
// (newStack sets it), holds every read while gate is open, and runs
// after, if set, once a read is done, on what it returns. With noHistory
// its history answers that it was trimmed, so subscriptions resync.
type countingBackend struct {
	gateway.Backend
	reads     atomic.Int64
	inFlight  atomic.Int64
	gate      chan struct{} // nil: no hold
	after     func(*streamapi.SnapshotResult)
	noHistory bool
}

func (b *countingBackend) Since(ctx context.Context, stream, group string, seq uint64) ([][]byte, uint64, bool, error) {
	if b.noHistory {
		return nil, 0, false, nil
	}
	return b.Backend.Since(ctx, stream, group, seq)
}

func (b *countingBackend) Snapshot(ctx context.Context, q streamapi.SnapshotRequest) (streamapi.SnapshotResult, error) {
	b.reads.Add(1)
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return streamapi.SnapshotResult{}, ctx.Err()
		}
	}
	res, err := b.Backend.Snapshot(ctx, q)
	if err == nil && b.after != nil {
		b.after(&res)
	}
	return res, err
}

// dialAll opens n multiplexed sockets.
func (s *stack) dialAll(t *testing.T, n int) []*client {
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = s.dial(t, "/", nil)
	}
	return cs
}

// joinAll sends, on every socket at once, a join of subscription "sub"
// with the fields extra(i) gives socket i.
func joinAll(cs []*client, stream, group string, extra func(i int) []any) {
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { c.send(join("sub", stream, group, extra(i)...)) })
	}
	wg.Wait()
}

// A reconnect storm, N sockets joining one group within SnapshotCoalesce,
// costs the backend one snapshot read shared by all of them, the first
// join's, not N. Joins of one item share reads of that item.
func TestReconnectStormSharesSnapshotReads(t *testing.T) {
	const n = 200
	cb := &countingBackend{gate: make(chan struct{})}
	s := newStack(t, gateway.Config{Backend: cb, MaxCatchUpsTotal: 2 * n}, streammodule.Config{})
	s.set(t, "s", "g", "a", 1)
	s.set(t, "s", "g", "b", 2)
	cs := s.dialAll(t, n)
	// Half the sockets join the group, half its item "a".
	item := func(i int) string {
		if i%2 == 1 {
			return "a"
		}
		return ""
	}
	joinAll(cs, "s", "g", func(i int) []any {
		if item(i) != "" {
			return []any{"id", item(i)}
		}
		return nil
	})
	// Every join is waiting: for its own read (n in flight), or for the
	// one read of its key.
	poll.CheckFor(t, 5*time.Second, poll.Holds("every join waits for a snapshot read", func() bool {
		return cb.inFlight.Load() == n || cb.inFlight.Load() == 2 &&
			gateway.SnapshotWaiters(s.gw, "s", "g", "")+gateway.SnapshotWaiters(s.gw, "s", "g", "a") == n
	}))
	close(cb.gate)
	for i, c := range cs {
		f := c.read()
		must(t, f.kind() == "sync" && f.Seq == 2 && *f.SubscriptionID == "sub", "socket %d: %s", i, f.Raw)
		if item(i) != "" {
			must(t, f.ID != nil && *f.ID == "a", "socket %d joined item a: %s", i, f.Raw)
		} else {
			must(t, len(f.event(t).IDs) == 2, "socket %d joined the group: %s", i, f.Raw)
		}
	}
	if r := cb.reads.Load(); r != 2 {
		t.Fatalf("%d joins cost %d snapshot reads, want 2 (one per key)", n, r)
	}
}

// Joins that share snapshot reads while a writer changes the group each
// get the snapshot and then every later event exactly once, with no gap:
// a read is shared only by joins whose subscription was in place before
// it started, so none misses an event committed before its subscribe. The
// joins come one by one while the first read is held and events are
// committed between them; the history holds one event, so a join that
// took the held read would miss events and need a resync, which fails the
// test.
func TestStormJoinsDuringWritesNoGap(t *testing.T) {
	const n = 40
	cb := &countingBackend{}
	// No spacing: the first storm join reads at once.
	s := newStack(t, gateway.Config{Backend: cb, MaxCatchUpsTotal: 2 * n, SnapshotCoalesce: -1}, streammodule.Config{HistorySize: 1})
	s.set(t, "w", "g", "0", 0)
	// A subscriber already there: the gateway receives the group's events,
	// and later joins subscribe at once.
	keeper := s.dial(t, groupPath("w", "g"), nil)
	must(t, keeper.read().kind() == "sync", "keeper's snapshot")

	var hold atomic.Bool
	release := make(chan struct{})
	unhold := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unhold) // before the gateway closes
	cb.after = func(*streamapi.SnapshotResult) {
		if hold.CompareAndSwap(true, false) {
			<-release
		}
	}
	cs := s.dialAll(t, n)
	hold.Store(true)
	// Each join is followed by two writes, committed while the gateway
	// handles the joins.
	seq := 1
	for i, c := range cs {
		c.send(join("sub", "w", "g"))
		if i == 0 {
			poll.CheckFor(t, 5*time.Second, poll.Holds("the first join's read is under way", func() bool { return cb.inFlight.Load() == 1 }))
		}
		for range 2 {
			s.set(t, "w", "g", strconv.Itoa(seq%7), seq)
			seq++
		}
	}
	final := uint64(seq) // the group's last sequence
	unhold()
	states := make([]map[string]string, n)
	lasts := make([]uint64, n)
	for i, c := range cs {
		f := c.read()
		must(t, f.kind() == "sync" && !f.event(t).Resync, "socket %d: %s", i, f.Raw)
		e := f.event(t)
		var vals []json.RawMessage
		json.Unmarshal(e.Data, &vals)
		states[i] = map[string]string{}
		for k, id := range e.IDs {
			states[i][id] = string(vals[k])
		}
		lasts[i] = f.Seq
	}
	want := map[string]string{}
	for k := range 7 {
		if v := s.call(t, "stream::get", map[string]any{"stream_name": "w", "group_id": "g", "item_id": strconv.Itoa(k)}); v != "null" {
			want[strconv.Itoa(k)] = v
		}
	}
	for i, c := range cs {
		for lasts[i] < final {
			f := c.read()
			must(t, f.kind() == "update" || f.kind() == "create", "socket %d after seq %d: %s", i, lasts[i], f.Raw)
			must(t, f.Seq == lasts[i]+1, "socket %d: seq %d after %d (gap or duplicate)", i, f.Seq, lasts[i])
			lasts[i] = f.Seq
			states[i][*f.ID] = string(f.event(t).Data)
		}
		must(t, fmt.Sprint(states[i]) == fmt.Sprint(want), "socket %d converged on %v, store has %v", i, states[i], want)
	}
	t.Logf("%d joins during writes: %d snapshot reads, %d events", n, cb.reads.Load(), final)
}

// At most one snapshot read of a group starts per SnapshotCoalesce: a
// join within that time of a read shares it, with what was written since
// from history; a join after it reads again, at once.
func TestSnapshotReadsSpaced(t *testing.T) {
	const spacing = 300 * time.Millisecond
	cb := &countingBackend{}
	s := newStack(t, gateway.Config{Backend: cb, SnapshotCoalesce: spacing}, streammodule.Config{})
	s.set(t, "s", "g", "a", 1)
	start := time.Now()
	f := s.dial(t, groupPath("s", "g"), nil).read()
	must(t, f.kind() == "sync" && f.Seq == 1, "first join: %s", f.Raw)
	s.set(t, "s", "g", "b", 2)
	second := s.dial(t, groupPath("s", "g"), nil)
	f = second.read()
	if time.Since(start) < spacing {
		must(t, f.kind() == "sync" && f.Seq == 1 && cb.reads.Load() == 1, "a join within the spacing shares the read: %s, %d reads", f.Raw, cb.reads.Load())
		f = second.read()
		must(t, f.kind() == "create" && f.Seq == 2, "then gets the write after it from history: %s", f.Raw)
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("the spacing passes", func() bool { return time.Since(start) > 2*spacing }))
	f = s.dial(t, groupPath("s", "g"), nil).read()
	must(t, f.kind() == "sync" && f.Seq == 2, "a join after the spacing: %s", f.Raw)
	must(t, cb.reads.Load() == 2, "%d reads", cb.reads.Load())
}

// A storm on a group many pages long: every socket gets the whole group as
// one message, built from pages the sockets share.
func TestReconnectStormPaged(t *testing.T) {
	const n = 30
	cb := &countingBackend{}
	s := newStack(t, gateway.Config{Backend: cb, SnapshotPageBytes: 4 << 10}, streammodule.Config{})
	ids, vals := fillGroup(t, s, "s", "big", 100, 200)
	cb.gate = make(chan struct{})
	cs := s.dialAll(t, n)
	joinAll(cs, "s", "big", func(int) []any { return nil })
	poll.CheckFor(t, 5*time.Second, poll.Holds("every join waits for a snapshot read", func() bool {
		return cb.inFlight.Load() == n || gateway.SnapshotWaiters(s.gw, "s", "big", "") == n
	}))
	close(cb.gate)
	for _, c := range cs {
		checkSync(t, c.read(), ids, vals)
	}
	pages := int64(len(ids)*200/(4<<10)) + 1
	t.Logf("%d joins of a group of about %d pages: %d page reads", n, pages, cb.reads.Load())
	if r := cb.reads.Load(); r >= n*pages/2 {
		t.Fatalf("%d joins of %d pages cost %d page reads", n, pages, r)
	}
}

// A storm during writes, within SnapshotCoalesce: every join shares the
// first join's snapshot read, even those that subscribed after it started
// and events committed meanwhile; those get the events between the
// snapshot and their subscribe from history, read once for all of them.
// Each socket gets one sync (no resync), then every event exactly once.
func TestStormDuringWritesOneRead(t *testing.T) {
	const n = 40
	cb := &countingBackend{}
	hb := &countingHistory{countingBackend: cb}
	// The keeper reads the item, not the group: the storm's group read is
	// its first.
	s := newStack(t, gateway.Config{Backend: hb, MaxCatchUpsTotal: 2 * n, SnapshotCoalesce: time.Minute}, streammodule.Config{})
	s.set(t, "w", "g", "0", 0)
	// A subscriber already there: the gateway receives the group's events,
	// and later joins subscribe at once.
	keeper := s.dial(t, groupPath("w", "g", "item_id=0"), nil)
	must(t, keeper.read().kind() == "sync", "keeper's snapshot")
	cb.reads.Store(0)
	// The first read is held once it has read: its snapshot is older than
	// the writes that follow.
	var hold atomic.Bool
	release := make(chan struct{})
	ungate := sync.OnceFunc(func() { close(release) })
	t.Cleanup(ungate)
	cb.after = func(*streamapi.SnapshotResult) {
		if hold.CompareAndSwap(true, false) {
			<-release
		}
	}
	hold.Store(true)

	cs := s.dialAll(t, n)
	seq := 1
	for i, c := range cs {
		c.send(join("sub", "w", "g"))
		if i == 0 {
			poll.CheckFor(t, 5*time.Second, poll.Holds("the first join's read is under way", func() bool { return cb.inFlight.Load() == 1 }))
		}
		s.set(t, "w", "g", strconv.Itoa(seq%7), seq)
		seq++
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("every join waits for the read", func() bool { return gateway.SnapshotWaiters(s.gw, "w", "g", "") == n }))
	ungate()
	final := uint64(seq)
	for i, c := range cs {
		f := c.read()
		must(t, f.kind() == "sync" && !f.event(t).Resync, "socket %d: %s", i, f.Raw)
		last := f.Seq
		for last < final {
			f := c.read()
			must(t, f.Seq == last+1, "socket %d: seq %d after %d (gap or duplicate): %s", i, f.Seq, last, f.Raw)
			last = f.Seq
		}
	}
	t.Logf("%d joins during writes: %d snapshot reads, %d history reads", n, cb.reads.Load(), hb.since.Load())
	must(t, cb.reads.Load() == 1, "%d snapshot reads, want 1", cb.reads.Load())
	must(t, hb.since.Load() <= 3, "%d history reads, want them shared", hb.since.Load())
}

// countingHistory counts the history reads of the backend it wraps.
type countingHistory struct {
	*countingBackend
	since atomic.Int64
}

func (b *countingHistory) Since(ctx context.Context, stream, group string, seq uint64) ([][]byte, uint64, bool, error) {
	b.since.Add(1)
	return b.countingBackend.Since(ctx, stream, group, seq)
}
