package jsstore_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
	"github.com/trinehq/trine/streammodule/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var streams atomic.Int64

func TestConformance(t *testing.T) {
	ns := natstest.Start(t)
	nc := natstest.Connect(t, ns)
	names := map[store.Store]string{}
	var mu sync.Mutex
	open := func(t *testing.T, name string, opts store.Options) store.Store {
		s, err := jsstore.Open(context.Background(), nc, jsstore.Config{Stream: name, Prefix: "t." + name}, opts)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		names[s] = name
		mu.Unlock()
		return s
	}
	storetest.Run(t, storetest.Adapter{
		New: func(t *testing.T, opts store.Options) store.Store {
			return open(t, "S"+strconv.FormatInt(streams.Add(1), 10), opts)
		},
		Reopen: func(t *testing.T, s store.Store, opts store.Options) store.Store {
			s.Close()
			mu.Lock()
			name := names[s]
			mu.Unlock()
			return open(t, name, opts)
		},
	})
}

func increment(old json.RawMessage, exists bool) (json.RawMessage, error) {
	n := 0
	if exists {
		n, _ = strconv.Atoi(string(old))
	}
	return json.RawMessage(strconv.Itoa(n + 1)), nil
}

// Two engines (two connections, two Store values) on a three-node cluster
// increment one counter concurrently: every increment counts, and the
// group's sequence has no gap or duplicate.
func TestSharedAcrossEnginesOnACluster(t *testing.T) {
	cl := natstest.StartCluster(t, 3)
	var stores []*jsstore.Store
	var mu sync.Mutex
	seqs := map[uint64]int{}
	for i := range 2 {
		nc, err := nats.Connect(cl.URLs(i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		s, err := jsstore.Open(context.Background(), nc, jsstore.Config{Replicas: 3}, store.Options{OnCommit: func(ch store.Change) {
			mu.Lock()
			seqs[ch.Seq]++
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	k := store.Key{Stream: "s", Group: "g", Item: "counter"}
	const perWriter, writers = 50, 4
	var wg sync.WaitGroup
	for w := range writers {
		s := stores[w%2]
		wg.Go(func() {
			for range perWriter {
				if _, err := s.Put(context.Background(), k, store.Cond{}, increment); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	it, seq, err := stores[1].Get(context.Background(), k)
	const n = perWriter * writers
	if err != nil || string(it.Value) != strconv.Itoa(n) || seq != n {
		t.Fatalf("after %d increments through two engines: %s at seq %d, %v", n, it.Value, seq, err)
	}
	for i := uint64(1); i <= n; i++ {
		if seqs[i] != 1 {
			t.Fatalf("sequence %d committed %d times", i, seqs[i])
		}
	}
}
