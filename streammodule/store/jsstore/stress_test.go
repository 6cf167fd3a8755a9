package jsstore_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// fleet is two engines' stores on one replicated stream of a 3-node
// cluster, each connected to a different node first, with every committed
// sequence recorded per group.
type fleet struct {
	cl     *natstest.Cluster
	stores []*jsstore.Store
	mu     sync.Mutex
	seqs   map[string]map[uint64]int // group → seq → commits
}

func startFleet(t *testing.T) *fleet {
	cl := natstest.StartCluster(t, 3)
	f := &fleet{cl: cl, seqs: map[string]map[uint64]int{}}
	for i := range 2 {
		nc, err := nats.Connect(cl.URLs(i), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := jsstore.Open(ctx, nc, jsstore.Config{Replicas: 3}, store.Options{OnCommit: func(ch store.Change) {
			f.mu.Lock()
			if f.seqs[ch.Group] == nil {
				f.seqs[ch.Group] = map[uint64]int{}
			}
			f.seqs[ch.Group][ch.Seq]++
			f.mu.Unlock()
		}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		f.stores = append(f.stores, s)
	}
	return f
}

// tally counts, per item, the increments acknowledged and those that failed
// (a failed write may or may not have been stored).
type tally struct {
	mu           sync.Mutex
	acked, maybe map[store.Key]int
}

// round runs writers concurrent increments, each perWriter times, spread
// over the items of two groups, half of the writers on each engine.
func (f *fleet) round(t *testing.T, tl *tally, writers, perWriter int, timeout time.Duration) {
	f.roundOf(t, tl, writers, perWriter, timeout, func(w, i int) store.Key {
		return store.Key{Stream: "s", Group: "g" + strconv.Itoa((w+i)%2), Item: "c" + strconv.Itoa((w*7+i)%4)}
	})
}

// roundOf is round with writer w's i-th increment on key(w, i).
func (f *fleet) roundOf(t *testing.T, tl *tally, writers, perWriter int, timeout time.Duration, key func(w, i int) store.Key) {
	var wg sync.WaitGroup
	for w := range writers {
		s := f.stores[w%2]
		wg.Go(func() {
			for i := range perWriter {
				k := key(w, i)
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				_, err := s.Put(ctx, k, store.Cond{}, increment)
				cancel()
				tl.mu.Lock()
				if err == nil {
					tl.acked[k]++
				} else {
					tl.maybe[k]++
				}
				tl.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// check reads every item through both engines: each holds at least its
// acknowledged increments and at most those plus the failed ones, and
// every sequence of a group was committed once, without gaps but for the
// failed writes (a write stored while its acknowledgement was lost is
// committed without its engine hearing of it).
func (f *fleet) check(t *testing.T, tl *tally) {
	t.Helper()
	failed := 0
	for _, n := range tl.maybe {
		failed += n
	}
	for k, acked := range tl.acked {
		for e, s := range f.stores {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			it, _, err := s.Get(ctx, k)
			cancel()
			if err != nil {
				t.Fatalf("engine %d: get %v: %v", e, k, err)
			}
			n, _ := strconv.Atoi(string(it.Value))
			if n < acked || n > acked+tl.maybe[k] {
				t.Fatalf("engine %d: %s/%s holds %d, but %d increments were acknowledged and %d failed", e, k.Group, k.Item, n, acked, tl.maybe[k])
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for g, seqs := range f.seqs {
		for seq, n := range seqs {
			if n != 1 {
				t.Fatalf("group %s: sequence %d committed %d times", g, seq, n)
			}
		}
		var last uint64
		for seq := range seqs {
			last = max(last, seq)
		}
		if missing := int(last) - len(seqs); missing > failed {
			t.Fatalf("group %s: %d sequences up to %d missing, %d writes failed", g, missing, last, failed)
		}
	}
}

// Ten rounds of 16 concurrent increments through two engines on a 3-node
// cluster: no acknowledged increment is ever lost, and sequences stay
// contiguous. Reads of a replica that lags must not turn into lost
// updates.
func TestNoLostIncrementsOnACluster(t *testing.T) {
	f := startFleet(t)
	tl := &tally{acked: map[store.Key]int{}, maybe: map[store.Key]int{}}
	for r := range 10 {
		f.round(t, tl, 16, 12, 30*time.Second)
		if n := len(tl.maybe); n != 0 {
			t.Fatalf("round %d: %d increments failed on a healthy cluster", r, n)
		}
		f.check(t, tl)
	}
}

// The same with the stream's leader stopped in the middle of a round and
// started again: writes may fail while the cluster elects a new leader,
// but none that was acknowledged is lost, and the fleet goes on writing.
func TestNoLostIncrementsWhenANodeStops(t *testing.T) {
	f := startFleet(t)
	tl := &tally{acked: map[store.Key]int{}, maybe: map[store.Key]int{}}
	f.round(t, tl, 16, 6, 30*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.round(t, tl, 16, 30, 5*time.Second)
	}()
	time.Sleep(150 * time.Millisecond)
	stopped := -1
	for i, ns := range f.cl.Nodes {
		if ns.JetStreamIsStreamLeader("$G", "TRINE_STREAMS") {
			stopped = i
		}
	}
	if stopped < 0 {
		stopped = 2
	}
	f.cl.Stop(stopped)
	time.Sleep(time.Second)
	f.cl.Restart(stopped)
	<-done
	f.round(t, tl, 16, 6, 30*time.Second)
	f.check(t, tl)
	total := 0
	for _, n := range tl.acked {
		total += n
	}
	if total < 16*6*2 {
		t.Fatalf("only %d increments acknowledged: %s", total, fmt.Sprint(tl.maybe))
	}
}

// A hot group: 32 writers through two engines increment 8 items of one
// group, so that each engine commits them in batches of many writes, and
// the stream's leader stops while batches are in flight, then comes back.
// No acknowledged increment is lost, none is counted twice, and the
// group's sequences stay unique.
func TestNoLostIncrementsInAHotGroupWhenANodeStops(t *testing.T) {
	f := startFleet(t)
	tl := &tally{acked: map[store.Key]int{}, maybe: map[store.Key]int{}}
	hot := func(w, i int) store.Key {
		return store.Key{Stream: "s", Group: "hot", Item: "c" + strconv.Itoa((w+i)%8)}
	}
	f.roundOf(t, tl, 32, 5, 30*time.Second, hot)
	if n := len(tl.maybe); n != 0 {
		t.Fatalf("%d increments failed on a healthy cluster", n)
	}
	f.check(t, tl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.roundOf(t, tl, 32, 40, 5*time.Second, hot)
	}()
	waitFor(t, "batches to commit", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.seqs["hot"]) > 32*5+64
	})
	stopped := -1
	for i, ns := range f.cl.Nodes {
		if ns.JetStreamIsStreamLeader("$G", "TRINE_STREAMS") {
			stopped = i
		}
	}
	if stopped < 0 {
		stopped = 2
	}
	f.cl.Stop(stopped)
	waitFor(t, "another stream leader", func() bool {
		for i, ns := range f.cl.Nodes {
			if i != stopped && ns.JetStreamIsStreamLeader("$G", "TRINE_STREAMS") {
				return true
			}
		}
		return false
	})
	f.cl.Restart(stopped)
	<-done
	f.roundOf(t, tl, 32, 5, 30*time.Second, hot)
	f.check(t, tl)
	acked, failed := 0, 0
	for k, n := range tl.acked {
		acked, failed = acked+n, failed+tl.maybe[k]
	}
	t.Logf("%d increments acknowledged, %d failed while node %d was down", acked, failed, stopped)
}

// waitFor polls cond until it holds, failing the test after 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
