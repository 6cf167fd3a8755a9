package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/streammodule/store"
)

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queued is how many writes wait in the group's queue.
func (s *Store) queued(stream, group string) int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	if q := s.batch.queues[gkey{stream, group}]; q != nil {
		return len(q.ops)
	}
	return 0
}

// batchRecorder is store.Options that hold a group's first commit until
// released, and tell the store's batches apart: the store stamps every
// change of one batch with one call to Now.
type batchRecorder struct {
	mu       sync.Mutex
	stamps   int
	changes  []store.Change
	held     chan struct{} // closed when the first commit is held
	release  chan struct{}
	holdOnce sync.Once
}

func newBatchRecorder() *batchRecorder {
	return &batchRecorder{held: make(chan struct{}), release: make(chan struct{})}
}

func (r *batchRecorder) options() store.Options {
	t0 := time.Unix(1e9, 0)
	return store.Options{
		Now: func() time.Time {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.stamps++
			return t0.Add(time.Duration(r.stamps))
		},
		OnCommit: func(ch store.Change) {
			r.mu.Lock()
			r.changes = append(r.changes, ch)
			r.mu.Unlock()
			r.holdOnce.Do(func() {
				close(r.held)
				<-r.release
			})
		},
	}
}

// batches is the number of changes in each batch, in commit order.
func (r *batchRecorder) batches() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for i, ch := range r.changes {
		if i == 0 || !ch.Time.Equal(r.changes[i-1].Time) {
			out = append(out, 0)
		}
		out[len(out)-1]++
	}
	return out
}

func increment(old json.RawMessage, exists bool) (json.RawMessage, error) {
	n := 0
	if exists {
		n, _ = strconv.Atoi(string(old))
	}
	return json.RawMessage(strconv.Itoa(n + 1)), nil
}

func seqp(n uint64) *uint64 { return &n }

// result is one queued write's outcome.
type result struct {
	ch  store.Change
	ok  bool
	err error
}

// holdFirst commits a first write of group g and holds it in OnCommit, so
// that the writes started next queue up behind it; then it starts them
// one by one, each queued before the next starts, releases the first and
// returns the results in the order started.
func holdFirst(t *testing.T, s *Store, r *batchRecorder, g string, writes []func(ctx context.Context) result) []result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, store.Key{Stream: "s", Group: g, Item: "c"}, store.Cond{}, increment)
		first <- err
	}()
	<-r.held
	out := make([]result, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Go(func() { out[i] = w(ctx) })
		waitFor(t, "a write to queue", func() bool { return s.queued("s", g) == i+1 })
	}
	close(r.release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	return out
}

func openTest(t *testing.T, cfg Config, opts store.Options) *Store {
	return openTestTB(t, cfg, opts)
}

func openTestTB(t testing.TB, cfg Config, opts store.Options) *Store {
	t.Helper()
	ns := natstest.Start(t)
	nc := natstest.Connect(t, ns)
	s, err := Open(context.Background(), nc, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Writes queued behind a commit in flight are committed together, by one
// batch, in the order they came; the writes whose if_seq does not hold,
// or that delete a missing item, are refused alone, take no sequence, and
// the others commit. Without atomic batches (an older server) the same
// writes commit the same, in batches of writes of one item.
func TestQueuedWritesCommitInOneBatch(t *testing.T) {
	t.Run("Atomic", func(t *testing.T) { testQueuedWrites(t, true, []int{1, 7}) })
	t.Run("OneMessage", func(t *testing.T) { testQueuedWrites(t, false, []int{1, 2, 1, 1, 1, 1, 1}) })
}

func testQueuedWrites(t *testing.T, atomic bool, wantBatches []int) {
	r := newBatchRecorder()
	s := openTest(t, Config{}, r.options())
	s.atomic.Store(atomic)
	k := func(item string) store.Key { return store.Key{Stream: "s", Group: "g", Item: item} }
	put := func(item string, c store.Cond) func(context.Context) result {
		return func(ctx context.Context) result {
			ch, err := s.Put(ctx, k(item), c, increment)
			return result{ch, err == nil, err}
		}
	}
	del := func(item string, c store.Cond) func(context.Context) result {
		return func(ctx context.Context) result {
			ch, ok, err := s.Delete(ctx, k(item), c)
			return result{ch, ok, err}
		}
	}
	writes := []func(context.Context) result{
		put("c", store.Cond{}),               // c: 2 at seq 2
		put("c", store.Cond{IfSeq: seqp(1)}), // c was at seq 1 before the batch, not now: refused
		put("c", store.Cond{IfSeq: seqp(2)}), // c: 3 at seq 3
		put("x", store.Cond{IfSeq: seqp(0)}), // x created at seq 4
		put("x", store.Cond{IfSeq: seqp(0)}), // x exists now: refused
		del("missing", store.Cond{}),         // nothing to delete: no sequence
		put("y", store.Cond{}),               // y created at seq 5
		func(ctx context.Context) result {
			ch, err := s.Emit(ctx, store.Change{Key: k(""), Kind: store.KindEvent, EventType: "e", Value: json.RawMessage(`{}`)})
			return result{ch, err == nil, err}
		}, // event at seq 6
		del("y", store.Cond{IfSeq: seqp(5)}), // y deleted at seq 7
		put("c", store.Cond{}),               // c: 4 at seq 8
	}
	got := holdFirst(t, s, r, "g", writes)
	want := []struct {
		seq uint64
		err error
	}{{2, nil}, {0, store.ErrConflict}, {3, nil}, {4, nil}, {0, store.ErrConflict}, {0, nil}, {5, nil}, {6, nil}, {7, nil}, {8, nil}}
	for i, w := range want {
		if !errors.Is(got[i].err, w.err) || got[i].ch.Seq != w.seq || got[i].ok != (w.seq != 0) {
			t.Errorf("write %d: seq %d ok %v err %v; want seq %d err %v", i, got[i].ch.Seq, got[i].ok, got[i].err, w.seq, w.err)
		}
	}
	if b := r.batches(); !slicesEqual(b, wantBatches) {
		t.Errorf("batches of %v changes; want %v", b, wantBatches)
	}
	for i, ch := range r.changes {
		if ch.Seq != uint64(i+1) {
			t.Fatalf("change %d committed with seq %d: out of order", i, ch.Seq)
		}
	}
	ctx := context.Background()
	for item, want := range map[string]string{"c": "4", "x": "1", "y": "", "missing": ""} {
		it, seq, err := s.Get(ctx, k(item))
		if err != nil || string(it.Value) != want || seq != 8 {
			t.Errorf("%s: %s at group seq %d, %v; want %q at 8", item, it.Value, seq, err, want)
		}
	}
	// Another engine reads the same: every item's subject or the head.
	nc := s.nc
	other, err := Open(ctx, nc, Config{}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := other.List(ctx, "s", "g", store.Range{})
	if err != nil || len(p.Items) != 2 || p.Items[0].ID != "c" || string(p.Items[0].Value) != "4" || p.Items[1].ID != "x" || p.Seq != 8 {
		t.Fatalf("list through another store: %+v, %v", p, err)
	}
}

// A batch stops short of MaxBatchBytes and MaxBatchWrites: the writes
// past them go in the next batch, still in order.
func TestBatchSplitsAtItsBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		perItem int
		want    []int
	}{
		// 1000 B of value + 256 of headers + the name: 3 writes a batch.
		{"bytes", Config{MaxBatchBytes: 4000}, 1000, []int{1, 3, 3, 3, 1}},
		{"writes", Config{MaxBatchWrites: 4}, 10, []int{1, 4, 4, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newBatchRecorder()
			s := openTest(t, tc.cfg, r.options())
			s.minAtomicWrites = 1
			value := json.RawMessage(`"` + strings.Repeat("v", tc.perItem-2) + `"`)
			var writes []func(context.Context) result
			for i := range 10 {
				writes = append(writes, func(ctx context.Context) result {
					ch, err := s.Put(ctx, store.Key{Stream: "s", Group: "g", Item: "i" + strconv.Itoa(i)}, store.Cond{}, func(json.RawMessage, bool) (json.RawMessage, error) { return value, nil })
					return result{ch, err == nil, err}
				})
			}
			got := holdFirst(t, s, r, "g", writes)
			for i, g := range got {
				if g.err != nil || g.ch.Seq != uint64(i+2) {
					t.Fatalf("write %d: seq %d, %v; want seq %d", i, g.ch.Seq, g.err, i+2)
				}
			}
			if b := r.batches(); !slicesEqual(b, tc.want) {
				t.Fatalf("batches of %v changes; want %v", b, tc.want)
			}
			p, err := s.List(context.Background(), "s", "g", store.Range{})
			if err != nil || len(p.Items) != 11 || p.Seq != 11 {
				t.Fatalf("list: %d items at seq %d, %v", len(p.Items), p.Seq, err)
			}
		})
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// What an engine remembers of a group never decides a write after another
// engine has written: an if_seq that holds on the group as it is commits,
// one that held before the other engine wrote is refused.
func TestRememberedGroupYieldsToAnotherEngine(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(ctx, natstest.Connect(t, ns), Config{}, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open(), open()
	k := store.Key{Stream: "s", Group: "g", Item: "c"}
	if _, err := a.Put(ctx, k, store.Cond{}, increment); err != nil { // a remembers c at seq 1
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, k, store.Cond{}, increment); err != nil { // c at seq 2
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, k, store.Cond{IfSeq: seqp(1)}, increment); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("if_seq 1 after another engine wrote seq 2: %v; want a conflict", err)
	}
	if _, err := b.Put(ctx, k, store.Cond{}, increment); err != nil { // c at seq 3
		t.Fatal(err)
	}
	ch, err := a.Put(ctx, k, store.Cond{IfSeq: seqp(3)}, increment)
	if err != nil || ch.Seq != 4 || string(ch.Value) != "4" {
		t.Fatalf("if_seq 3, the item's seq: %+v, %v", ch, err)
	}
	if _, ok, err := b.Delete(ctx, k, store.Cond{}); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if _, ok, err := a.Delete(ctx, k, store.Cond{}); ok || err != nil {
		t.Fatalf("delete of an item another engine deleted: ok %v, %v; want nothing done", ok, err)
	}
	ch, err = a.Put(ctx, k, store.Cond{IfSeq: seqp(0)}, increment)
	if err != nil || ch.Seq != 6 || string(ch.Value) != "1" {
		t.Fatalf("create after another engine's delete: %+v, %v", ch, err)
	}
}

// 32 writers, each writing its own item of one group, on one embedded
// node: the writes/s of a hot group, and its batches' mean size.
func BenchmarkHotGroup(b *testing.B) {
	benchmarkWriters(b, 1, func(opts store.Options) *Store { return openTestTB(b, Config{}, opts) })
}

// The same with each writer on a group of its own.
func BenchmarkSpreadGroups(b *testing.B) {
	benchmarkWriters(b, 32, func(opts store.Options) *Store { return openTestTB(b, Config{}, opts) })
}

// A hot group on a 3-node in-process cluster, 3 replicas.
func BenchmarkHotGroupCluster(b *testing.B) {
	benchmarkWriters(b, 1, func(opts store.Options) *Store {
		cl := natstest.StartCluster(b, 3)
		nc := natstest.ConnectURL(b, cl.URLs(0))
		s, err := Open(context.Background(), nc, Config{Replicas: 3}, opts)
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

func benchmarkWriters(b *testing.B, groups int, open func(store.Options) *Store) {
	var mu sync.Mutex
	var batches, changes int
	var last time.Time
	s := open(store.Options{OnCommit: func(ch store.Change) {
		mu.Lock()
		changes++
		if !ch.Time.Equal(last) {
			batches++
			last = ch.Time
		}
		mu.Unlock()
	}})
	var next sync.Mutex
	n := 0
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			k := store.Key{Stream: "s", Group: "g" + strconv.Itoa(w%groups), Item: "i" + strconv.Itoa(w)}
			for {
				next.Lock()
				if n >= b.N {
					next.Unlock()
					return
				}
				n++
				next.Unlock()
				if _, err := s.Put(context.Background(), k, store.Cond{}, increment); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	mu.Lock()
	b.ReportMetric(float64(changes)/float64(max(batches, 1)), "writes/batch")
	mu.Unlock()
}

func TestPubAckSeq(t *testing.T) {
	for ack, want := range map[string]uint64{
		`{"stream":"S","seq":5}`:                                 5,
		`{"stream":"S","domain":"d","seq":18446744073709551615}`: 1<<64 - 1,
		`{"stream":"S","seq":12,"batch":"abc","count":3}`:        12,
	} {
		if got, err := pubAckSeq([]byte(ack)); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", ack, got, err, want)
		}
	}
	_, err := pubAckSeq([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 4"},"stream":"S","seq":0}`))
	if !conflict(err) {
		t.Errorf("a wrong last sequence: %v; want a conflict", err)
	}
	if _, err := pubAckSeq([]byte(`{"stream":"S"}`)); err == nil {
		t.Error("an ack without a sequence passed")
	}
}

// What an engine remembers of its groups stays within 4 × MaxBatchBytes,
// however many groups and items it writes, and a group past MaxBatchBytes
// keeps its head only.
func TestRememberedBytesStayBounded(t *testing.T) {
	s := openTest(t, Config{MaxBatchBytes: 4096}, store.Options{})
	value := json.RawMessage(`"` + strings.Repeat("v", 500) + `"`)
	ctx := context.Background()
	for g := range 20 {
		for i := range 12 {
			k := store.Key{Stream: "s", Group: "g" + strconv.Itoa(g), Item: "i" + strconv.Itoa(i)}
			if _, err := s.Put(ctx, k, store.Cond{}, func(json.RawMessage, bool) (json.RawMessage, error) { return value, nil }); err != nil {
				t.Fatal(err)
			}
			s.batch.mu.Lock()
			sum := 0
			for _, k := range s.batch.known {
				sum += k.size()
				if k.bytes > 4096 {
					t.Fatalf("a group remembers %d bytes of items", k.bytes)
				}
			}
			if sum != s.batch.bytes || sum > 4*4096 {
				t.Fatalf("remembered %d bytes, counted %d; bound %d", sum, s.batch.bytes, 4*4096)
			}
			s.batch.mu.Unlock()
		}
	}
	it, _, err := s.Get(ctx, store.Key{Stream: "s", Group: "g0", Item: "i3"})
	if err != nil || string(it.Value) != string(value) {
		t.Fatalf("g0/i3 after the cache moved on: %.20s, %v", it.Value, err)
	}
}

// TestHotGroupBatchesCarryItsWriters: writers that write again as soon
// as they are acknowledged go out together, not in two halves that take
// turns (each writer waiting for the other half's commit, then its own).
func TestHotGroupBatchesCarryItsWriters(t *testing.T) {
	const writers, each = 32, 40
	var mu sync.Mutex
	var stamps, changes int
	batches := map[time.Time]bool{}
	t0 := time.Unix(1e9, 0)
	s := openTest(t, Config{}, store.Options{
		Now: func() time.Time { // once per batch
			mu.Lock()
			defer mu.Unlock()
			stamps++
			return t0.Add(time.Duration(stamps))
		},
		OnCommit: func(ch store.Change) {
			mu.Lock()
			defer mu.Unlock()
			changes++
			batches[ch.Time] = true
		},
	})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			k := store.Key{Stream: "s", Group: "hot", Item: "i" + strconv.Itoa(w)}
			for range each {
				if _, err := s.Put(t.Context(), k, store.Cond{}, increment); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if changes != writers*each {
		t.Fatalf("%d changes committed, want %d", changes, writers*each)
	}
	// The first batch and the last ones, as writers finish, are smaller.
	if avg := float64(changes) / float64(len(batches)); avg < 0.75*writers {
		t.Errorf("%d writers made batches of %.1f writes on average, want at least %.0f", writers, avg, 0.75*writers)
	}
}
