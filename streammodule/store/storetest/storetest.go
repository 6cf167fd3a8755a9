// Package storetest is the conformance suite every store adapter passes.
//
// Concurrency: a test helper. Run's conformance tests run on the test's
// goroutines and start none that outlive a test; the store under test must
// be safe for concurrent use.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/trinehq/trine/streammodule/store"
)

// Adapter opens stores for the suite.
type Adapter struct {
	// New returns an empty store, closed by the suite.
	New func(t *testing.T, opts store.Options) store.Store
	// Reopen, for durable adapters, closes s and opens its storage again.
	Reopen func(t *testing.T, s store.Store, opts store.Options) store.Store
}

// Run runs the suite against a.
func Run(t *testing.T, a Adapter) {
	tests := []struct {
		name string
		run  func(t *testing.T, a Adapter)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"Sequences", testSequences},
		{"IfSeq", testIfSeq},
		{"MutatorError", testMutatorError},
		{"Emit", testEmit},
		{"List", testList},
		{"ListMaxBytes", testListMaxBytes},
		{"ListGroups", testListGroups},
		{"HostileNames", testHostileNames},
		{"LongNames", testLongNames},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"CommitOrder", testCommitOrder},
		{"Closed", testClosed},
		{"Reopen", testReopen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, a) })
	}
}

var ctx = context.Background()

func open(t *testing.T, a Adapter, opts store.Options) store.Store {
	t.Helper()
	s := a.New(t, opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func set(v string) store.Mutator {
	return func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(v), nil }
}

func put(t *testing.T, s store.Store, k store.Key, v string) store.Change {
	t.Helper()
	ch, err := s.Put(ctx, k, store.Cond{}, set(v))
	if err != nil {
		t.Fatalf("Put(%v): %v", k, err)
	}
	return ch
}

func get(t *testing.T, s store.Store, k store.Key) (store.Item, uint64) {
	t.Helper()
	it, seq, err := s.Get(ctx, k)
	if err != nil {
		t.Fatalf("Get(%v): %v", k, err)
	}
	return it, seq
}

func ptr(v uint64) *uint64 { return &v }

func testPutGetDelete(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	k := store.Key{Stream: "s", Group: "g", Item: "i"}
	if it, seq := get(t, s, k); it.Seq != 0 || it.Value != nil || seq != 0 {
		t.Fatalf("missing item: got %+v at %d", it, seq)
	}
	ch := put(t, s, k, `{"a":1}`)
	if ch.Kind != store.KindCreate || ch.Old != nil || string(ch.Value) != `{"a":1}` || ch.Seq != 1 || ch.Key != k {
		t.Fatalf("first put: %+v", ch)
	}
	ch = put(t, s, k, `null`)
	if ch.Kind != store.KindUpdate || string(ch.Old) != `{"a":1}` || string(ch.Value) != `null` || ch.Seq != 2 {
		t.Fatalf("second put: %+v", ch)
	}
	if it, seq := get(t, s, k); string(it.Value) != "null" || it.Seq != 2 || seq != 2 {
		t.Fatalf("stored null: %+v at %d", it, seq)
	}
	ch, ok, err := s.Delete(ctx, k, store.Cond{})
	if err != nil || !ok || ch.Kind != store.KindDelete || string(ch.Value) != "null" || ch.Seq != 3 {
		t.Fatalf("delete: %+v %v %v", ch, ok, err)
	}
	if it, _ := get(t, s, k); it.Seq != 0 {
		t.Fatalf("after delete: %+v", it)
	}
	if _, ok, err := s.Delete(ctx, k, store.Cond{}); ok || err != nil {
		t.Fatalf("delete of a missing item: ok=%v err=%v", ok, err)
	}
	if _, seq := get(t, s, k); seq != 3 {
		t.Fatalf("a delete of a missing item used a sequence: %d", seq)
	}
}

func testSequences(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	for i := 1; i <= 3; i++ {
		if ch := put(t, s, store.Key{Stream: "s", Group: "a", Item: strconv.Itoa(i)}, "1"); ch.Seq != uint64(i) {
			t.Fatalf("group a put %d: seq %d", i, ch.Seq)
		}
	}
	if ch := put(t, s, store.Key{Stream: "s", Group: "b", Item: "x"}, "1"); ch.Seq != 1 {
		t.Fatalf("groups share a sequence: %d", ch.Seq)
	}
	if ch := put(t, s, store.Key{Stream: "t", Group: "a", Item: "x"}, "1"); ch.Seq != 1 {
		t.Fatalf("streams share a sequence: %d", ch.Seq)
	}
}

func testIfSeq(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	k := store.Key{Stream: "s", Group: "g", Item: "i"}
	if _, err := s.Put(ctx, k, store.Cond{IfSeq: ptr(1)}, set("1")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("if_seq 1 on a missing item: %v", err)
	}
	if _, err := s.Put(ctx, k, store.Cond{IfSeq: ptr(0)}, set("1")); err != nil {
		t.Fatalf("if_seq 0 on a missing item: %v", err)
	}
	if _, err := s.Put(ctx, k, store.Cond{IfSeq: ptr(0)}, set("2")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("if_seq 0 on an existing item: %v", err)
	}
	put(t, s, store.Key{Stream: "s", Group: "g", Item: "other"}, "0") // seq 2
	if _, err := s.Put(ctx, k, store.Cond{IfSeq: ptr(2)}, set("3")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("if_seq compares the item's seq, not the group's: %v", err)
	}
	if _, _, err := s.Delete(ctx, k, store.Cond{IfSeq: ptr(5)}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete with a stale if_seq: %v", err)
	}
	if it, seq := get(t, s, k); string(it.Value) != "1" || it.Seq != 1 || seq != 2 {
		t.Fatalf("a refused write changed something: %+v at %d", it, seq)
	}
	ch, err := s.Put(ctx, k, store.Cond{IfSeq: ptr(1)}, set("4"))
	if err != nil || ch.Seq != 3 {
		t.Fatalf("matching if_seq: %+v %v", ch, err)
	}
	if _, ok, err := s.Delete(ctx, k, store.Cond{IfSeq: ptr(3)}); !ok || err != nil {
		t.Fatalf("delete with a matching if_seq: %v %v", ok, err)
	}
	if _, _, err := s.Delete(ctx, store.Key{Stream: "none", Group: "g", Item: "i"}, store.Cond{IfSeq: ptr(1)}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete in a missing group with if_seq 1: %v", err)
	}
}

func testMutatorError(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	k := store.Key{Stream: "s", Group: "g", Item: "i"}
	put(t, s, k, `"v"`)
	boom := errors.New("boom")
	_, err := s.Put(ctx, k, store.Cond{}, func(old json.RawMessage, exists bool) (json.RawMessage, error) {
		if !exists || string(old) != `"v"` {
			t.Errorf("mutator saw %s, %v", old, exists)
		}
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("mutator error: %v", err)
	}
	if it, seq := get(t, s, k); string(it.Value) != `"v"` || seq != 1 {
		t.Fatalf("failed mutator changed the item: %+v at %d", it, seq)
	}
}

func testEmit(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	k := store.Key{Stream: "s", Group: "g", Item: "i"}
	ch, err := s.Emit(ctx, store.Change{Key: k, Kind: store.KindEvent, EventType: "ping", Value: json.RawMessage(`{"x":1}`)})
	if err != nil || ch.Kind != store.KindEvent || ch.EventType != "ping" || string(ch.Value) != `{"x":1}` || ch.Seq != 1 {
		t.Fatalf("send: %+v %v", ch, err)
	}
	if it, seq := get(t, s, k); it.Seq != 0 || seq != 1 {
		t.Fatalf("send stored something: %+v at %d", it, seq)
	}
	ch, err = s.Emit(ctx, store.Change{Key: k, Kind: store.KindUpdate, Old: json.RawMessage("1"), Value: json.RawMessage("2")})
	if err != nil || ch.Kind != store.KindUpdate || string(ch.Old) != "1" || string(ch.Value) != "2" || ch.Seq != 2 {
		t.Fatalf("emitted update: %+v %v", ch, err)
	}
	if it, _ := get(t, s, k); it.Seq != 0 {
		t.Fatalf("an emitted update stored something: %+v", it)
	}
	if gs, _ := s.ListGroups(ctx, "s"); len(gs) != 0 {
		t.Fatalf("a group with only events is listed: %v", gs)
	}
}

func testList(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	for _, id := range []string{"c", "a", "b", "d"} {
		put(t, s, store.Key{Stream: "s", Group: "g", Item: id}, strconv.Quote(id))
	}
	p, err := s.List(ctx, "s", "g", store.Range{})
	if err != nil || ids(p) != "a,b,c,d" || p.Seq != 4 || p.More {
		t.Fatalf("list all: %v %+v", err, p)
	}
	if string(p.Items[0].Value) != `"a"` || p.Items[0].Seq != 2 {
		t.Fatalf("item a: %+v", p.Items[0])
	}
	p, _ = s.List(ctx, "s", "g", store.Range{Limit: 2})
	if ids(p) != "a,b" || !p.More {
		t.Fatalf("first page: %+v", p)
	}
	p, _ = s.List(ctx, "s", "g", store.Range{After: "b", Limit: 2})
	if ids(p) != "c,d" || p.More {
		t.Fatalf("second page: %+v", p)
	}
	p, err = s.List(ctx, "s", "missing", store.Range{})
	if err != nil || p.Items == nil || len(p.Items) != 0 || p.Seq != 0 {
		t.Fatalf("missing group: %+v %v", p, err)
	}
}

// testListMaxBytes: List stops at MaxBytes (ids, values and ItemBytes an
// item), with More, and returns one item however large it is.
func testListMaxBytes(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	for _, id := range []string{"a", "b", "c", "d"} {
		put(t, s, store.Key{Stream: "s", Group: "g", Item: id}, `"`+strings.Repeat(id, 98)+`"`) // 1+100 bytes an item
	}
	for _, c := range []struct {
		r    store.Range
		want string
		more bool
	}{
		{store.Range{MaxBytes: 202}, "a,b", true},
		{store.Range{MaxBytes: 201}, "a", true},
		{store.Range{MaxBytes: 10}, "a", true},
		{store.Range{MaxBytes: 404}, "a,b,c,d", false},
		{store.Range{MaxBytes: 404, ItemBytes: 1}, "a,b,c", true},
		{store.Range{After: "b", MaxBytes: 202}, "c,d", false},
		{store.Range{Limit: 1, MaxBytes: 1000}, "a", true},
	} {
		p, err := s.List(ctx, "s", "g", c.r)
		if err != nil || ids(p) != c.want || p.More != c.more {
			t.Errorf("List(%+v) = %q more %v, %v; want %q more %v", c.r, ids(p), p.More, err, c.want, c.more)
		}
	}
}

func ids(p store.Page) string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.ID)
	}
	return strings.Join(out, ",")
}

func testListGroups(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	put(t, s, store.Key{Stream: "b", Group: "y", Item: "1"}, "1")
	put(t, s, store.Key{Stream: "b", Group: "x", Item: "1"}, "1")
	put(t, s, store.Key{Stream: "a", Group: "z", Item: "1"}, "1")
	put(t, s, store.Key{Stream: "c", Group: "gone", Item: "1"}, "1")
	if _, _, err := s.Delete(ctx, store.Key{Stream: "c", Group: "gone", Item: "1"}, store.Cond{}); err != nil {
		t.Fatal(err)
	}
	gs, err := s.ListGroups(ctx, "b")
	if err != nil || !slices.Equal(gs, []string{"x", "y"}) {
		t.Fatalf("ListGroups: %v %v", gs, err)
	}
	if gs, _ := s.ListGroups(ctx, "nothing"); gs == nil || len(gs) != 0 {
		t.Fatalf("ListGroups of a missing stream: %#v", gs)
	}
	all, err := s.ListAll(ctx)
	want := []store.StreamGroups{{ID: "a", Groups: []string{"z"}}, {ID: "b", Groups: []string{"x", "y"}}}
	if err != nil || fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("ListAll: %v %v", all, err)
	}
}

// HostileNames are names that break naive key or subject schemes.
var HostileNames = []string{"", ".", "*", ">", ":", "a:b", "a.b", "/", "a/b", " ", "a b", "🔥", "%2F", "~", "\x00", "trine.stream"}

func testHostileNames(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	n := 0
	for _, st := range HostileNames {
		for _, g := range HostileNames {
			n++
			put(t, s, store.Key{Stream: st, Group: g, Item: st + "|" + g}, strconv.Itoa(n))
		}
	}
	// Pairs that collide when names are joined with a separator.
	put(t, s, store.Key{Stream: "x:y", Group: "z", Item: "i"}, `"first"`)
	put(t, s, store.Key{Stream: "x", Group: "y:z", Item: "i"}, `"second"`)
	if it, _ := get(t, s, store.Key{Stream: "x:y", Group: "z", Item: "i"}); string(it.Value) != `"first"` {
		t.Fatalf("x:y/z collided: %s", it.Value)
	}
	n = 0
	for _, st := range HostileNames {
		gs, err := s.ListGroups(ctx, st)
		if err != nil || !slices.Equal(gs, sortedNames()) {
			t.Fatalf("ListGroups(%q) = %q, %v", st, gs, err)
		}
		for _, g := range HostileNames {
			n++
			p, err := s.List(ctx, st, g, store.Range{})
			if err != nil || len(p.Items) != 1 || p.Items[0].ID != st+"|"+g || string(p.Items[0].Value) != strconv.Itoa(n) {
				t.Fatalf("List(%q, %q) = %+v, %v", st, g, p, err)
			}
		}
	}
}

// LongNames are names at the 1024-byte limit (of bytes that escape, and of
// bytes that do not) and names that share a long prefix: they break
// schemes whose derived keys grow with the name or are cut short.
func LongNames() []string {
	return []string{
		strings.Repeat(".", 1024), strings.Repeat(".", 1023) + "x", strings.Repeat(".", 1023) + "y",
		strings.Repeat("a", 1024), strings.Repeat("a", 1023) + "b", strings.Repeat("é", 512),
		strings.Repeat("a", 200), strings.Repeat("a", 201),
	}
}

func testLongNames(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	names := LongNames()
	for i, st := range names {
		for j, g := range names {
			for k, it := range names {
				if (i+j+k)%3 != 0 {
					continue // a third of the triples is plenty
				}
				put(t, s, store.Key{Stream: st, Group: g, Item: it}, strconv.Itoa(i*100+j*10+k))
			}
		}
	}
	for i, st := range names {
		var want []string
		for j, g := range names {
			var ids []string
			for k, it := range names {
				if (i+j+k)%3 != 0 {
					continue
				}
				ids = append(ids, it)
				if got, _ := get(t, s, store.Key{Stream: st, Group: g, Item: it}); string(got.Value) != strconv.Itoa(i*100+j*10+k) {
					t.Fatalf("Get(#%d, #%d, #%d) = %s", i, j, k, got.Value)
				}
			}
			slices.Sort(ids)
			p, err := s.List(ctx, st, g, store.Range{})
			if err != nil || len(p.Items) != len(ids) {
				t.Fatalf("List(#%d, #%d) = %d items, %v; want %d", i, j, len(p.Items), err, len(ids))
			}
			for n, it := range p.Items {
				if it.ID != ids[n] {
					t.Fatalf("List(#%d, #%d) item %d is a %d-byte id, want %d bytes", i, j, n, len(it.ID), len(ids[n]))
				}
			}
			want = append(want, g)
		}
		slices.Sort(want)
		if gs, err := s.ListGroups(ctx, st); err != nil || !slices.Equal(gs, want) {
			t.Fatalf("ListGroups(#%d) = %d groups, %v; want %d", i, len(gs), err, len(want))
		}
	}
	all, err := s.ListAll(ctx)
	if err != nil || len(all) != len(names) {
		t.Fatalf("ListAll = %d streams, %v; want %d", len(all), err, len(names))
	}
	k := store.Key{Stream: names[0], Group: names[1], Item: names[2]}
	if _, ok, err := s.Delete(ctx, k, store.Cond{}); err != nil || !ok {
		t.Fatalf("Delete: %v, %v", ok, err)
	}
	if got, _ := get(t, s, k); got.Seq != 0 {
		t.Fatalf("deleted item still there: %s", got.Value)
	}
	if got, _ := get(t, s, store.Key{Stream: names[0], Group: names[1], Item: names[1]}); got.Seq != 0 && (0+1+1)%3 != 0 {
		t.Fatalf("a neighbour of the deleted item: %s", got.Value)
	}
}

func sortedNames() []string {
	out := slices.Clone(HostileNames)
	slices.Sort(out)
	return out
}

// increment adds one to a JSON integer (missing counts as 0).
func increment(old json.RawMessage, exists bool) (json.RawMessage, error) {
	n := 0
	if exists {
		var err error
		if n, err = strconv.Atoi(string(old)); err != nil {
			return nil, err
		}
	}
	return json.RawMessage(strconv.Itoa(n + 1)), nil
}

func testConcurrentIncrements(t *testing.T, a Adapter) {
	s := open(t, a, store.Options{})
	k := store.Key{Stream: "s", Group: "g", Item: "counter"}
	const n = 1000
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range n / 50 {
				if _, err := s.Put(ctx, k, store.Cond{}, increment); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if it, seq := get(t, s, k); string(it.Value) != strconv.Itoa(n) || seq != n {
		t.Fatalf("after %d concurrent increments: %s at seq %d", n, it.Value, seq)
	}
}

func testCommitOrder(t *testing.T, a Adapter) {
	var mu sync.Mutex
	last := map[string]uint64{}
	var bad []string
	var commits int
	s := open(t, a, store.Options{OnCommit: func(ch store.Change) {
		mu.Lock()
		defer mu.Unlock()
		commits++
		g := ch.Stream + "/" + ch.Group
		if ch.Seq != last[g]+1 {
			bad = append(bad, fmt.Sprintf("%s: %d after %d", g, ch.Seq, last[g]))
		}
		last[g] = ch.Seq
	}})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				k := store.Key{Stream: "s", Group: strconv.Itoa(w % 2), Item: strconv.Itoa(i % 5)}
				var err error
				switch i % 3 {
				case 0:
					_, err = s.Put(ctx, k, store.Cond{}, increment)
				case 1:
					_, err = s.Emit(ctx, store.Change{Key: k, Kind: store.KindEvent, EventType: "e", Value: json.RawMessage("1")})
				default:
					_, _, err = s.Delete(ctx, k, store.Cond{})
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("commits out of order: %v", bad)
	}
	for g := range last {
		_, seq, _ := s.Get(ctx, store.Key{Stream: "s", Group: g[2:], Item: "x"})
		if seq != last[g] {
			t.Fatalf("group %s: store at %d, last commit %d", g, seq, last[g])
		}
	}
	if commits == 0 {
		t.Fatal("OnCommit never ran")
	}
}

func testClosed(t *testing.T, a Adapter) {
	s := a.New(t, store.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	k := store.Key{Stream: "s", Group: "g", Item: "i"}
	if _, err := s.Put(ctx, k, store.Cond{}, set("1")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if _, _, err := s.Get(ctx, k); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

func testReopen(t *testing.T, a Adapter) {
	if a.Reopen == nil {
		t.Skip("not a durable adapter")
	}
	s := a.New(t, store.Options{})
	k := store.Key{Stream: "s:1", Group: "g 🔥", Item: "i"}
	j := store.Key{Stream: "s:1", Group: "g 🔥", Item: "j"}
	e := store.Key{Stream: "emptied", Group: "g", Item: "x"}
	put(t, s, k, `{"v":1}`)
	put(t, s, j, `"gone"`)
	mustDelete(t, s, j)
	if _, err := s.Emit(ctx, store.Change{Key: k, Kind: store.KindEvent, EventType: "e", Value: json.RawMessage("1")}); err != nil {
		t.Fatal(err)
	}
	put(t, s, e, "1")
	mustDelete(t, s, e)

	s = a.Reopen(t, s, store.Options{})
	if it, seq := get(t, s, k); string(it.Value) != `{"v":1}` || it.Seq != 1 || seq != 4 {
		t.Fatalf("after reopen: %+v at %d", it, seq)
	}
	if it, _ := get(t, s, j); it.Seq != 0 {
		t.Fatalf("a deleted item came back: %+v", it)
	}
	if gs, _ := s.ListGroups(ctx, "emptied"); len(gs) != 0 {
		t.Fatalf("an emptied group is listed after reopen: %v", gs)
	}
	if ch := put(t, s, e, "2"); ch.Seq != 3 {
		t.Fatalf("an emptied group's sequence restarted: %d", ch.Seq)
	}
	put(t, s, k, `{"v":2}`)

	s = a.Reopen(t, s, store.Options{})
	defer s.Close()
	if it, seq := get(t, s, k); string(it.Value) != `{"v":2}` || it.Seq != 5 || seq != 5 {
		t.Fatalf("after a second reopen: %+v at %d", it, seq)
	}
	if it, seq := get(t, s, e); string(it.Value) != "2" || seq != 3 {
		t.Fatalf("after a second reopen: %+v at %d", it, seq)
	}
}

func mustDelete(t *testing.T, s store.Store, k store.Key) {
	t.Helper()
	if _, ok, err := s.Delete(ctx, k, store.Cond{}); !ok || err != nil {
		t.Fatalf("Delete(%v): %v %v", k, ok, err)
	}
}
