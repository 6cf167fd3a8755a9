package trine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
	trine "github.com/trinehq/trine/worker-sdk"
)

// registerStreams registers a StreamModule with an in-memory store on e.
func registerStreams(t *testing.T, e *engine.Engine) *streammodule.Module {
	t.Helper()
	m, err := streammodule.New(streammodule.Config{OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }})
	if err != nil {
		t.Fatalf("streammodule.New = %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if err := m.Register(e); err != nil {
		t.Fatalf("StreamModule Register = %v", err)
	}
	return m
}

// startStreamEngine runs an engine with the StreamModule.
func startStreamEngine(t *testing.T) (*enginetest.Server, *streammodule.Module) {
	t.Helper()
	srv := startEngine(t)
	return srv, registerStreams(t, srv.Engine)
}

type todo struct {
	Title string   `json:"title"`
	Done  bool     `json:"done"`
	N     int      `json:"n"`
	Tags  []string `json:"tags,omitempty"`
}

func TestStreamRoundTrip(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	s := trine.NewStream[todo](w, "todos")
	ctx := t.Context()

	if s.Name() != "todos" {
		t.Fatalf("Name() = %q", s.Name())
	}
	if it, found, err := s.Get(ctx, "inbox", "a"); err != nil || found || it.Seq != 0 {
		t.Fatalf("Get(missing) = %+v, %v, %v; want not found", it, found, err)
	}
	first := todo{Title: "write", N: 1}
	ch, err := s.Set(ctx, "inbox", "a", first)
	if err != nil || ch.Old != nil || !reflect.DeepEqual(ch.New, first) || ch.Seq != 1 {
		t.Fatalf("Set(a) = %+v, %v; want no old value, seq 1", ch, err)
	}
	second := todo{Title: "write more", N: 2}
	ch, err = s.Set(ctx, "inbox", "a", second)
	if err != nil || ch.Old == nil || !reflect.DeepEqual(*ch.Old, first) || !reflect.DeepEqual(ch.New, second) || ch.Seq != 2 {
		t.Fatalf("Set(a) again = %+v, %v", ch, err)
	}
	it, found, err := s.Get(ctx, "inbox", "a")
	if err != nil || !found || !reflect.DeepEqual(it, trine.Item[todo]{ID: "a", Data: second, Seq: 2}) {
		t.Fatalf("Get(a) = %+v, %v, %v", it, found, err)
	}

	ch, err = s.Update(ctx, "inbox", "a", []trine.UpdateOp{
		trine.OpSet("title", "edit"),
		trine.OpIncrement("n", 5),
		trine.OpDecrement("n", 2),
		trine.OpSet("done", true),
		trine.OpSet("tags", []string{}),
		trine.OpAppend([]string{"tags"}, "urgent"),
	})
	want := todo{Title: "edit", Done: true, N: 5, Tags: []string{"urgent"}}
	if err != nil || ch.Old == nil || !reflect.DeepEqual(*ch.Old, second) || !reflect.DeepEqual(ch.New, want) || ch.Seq != 3 {
		t.Fatalf("Update(a) = %+v, %v; want new %+v at seq 3", ch, err, want)
	}
	ch, err = s.Update(ctx, "inbox", "fresh", []trine.UpdateOp{trine.OpSet("title", "new"), trine.OpIncrement("n", 1)})
	if err != nil || ch.Old != nil || !reflect.DeepEqual(ch.New, todo{Title: "new", N: 1}) || ch.Seq != 4 {
		t.Fatalf("Update(missing item) = %+v, %v", ch, err)
	}
	if ch, err = s.Update(ctx, "inbox", "fresh", nil); err != nil || ch.Seq != 5 || ch.Old == nil {
		t.Fatalf("Update(no ops) = %+v, %v", ch, err)
	}

	if _, err := s.Set(ctx, "archive", "z", todo{Title: "old"}); err != nil {
		t.Fatal(err)
	}
	gs, err := s.Groups(ctx)
	if err != nil || !slices.Equal(gs, []string{"archive", "inbox"}) {
		t.Fatalf("Groups() = %q, %v", gs, err)
	}
	if gs, err := trine.NewStream[todo](w, "nothing-here").Groups(ctx); err != nil || gs == nil || len(gs) != 0 {
		t.Fatalf("Groups() of an empty stream = %#v, %v; want an empty slice", gs, err)
	}

	seq, err := s.Send(ctx, "inbox", "typing", map[string]string{"user": "ann"})
	if err != nil || seq != 6 {
		t.Fatalf("Send = %d, %v; want seq 6", seq, err)
	}
	if seq, err = s.Send(ctx, "inbox", "poke", nil, trine.WithItem("a")); err != nil || seq != 7 {
		t.Fatalf("Send(WithItem) = %d, %v; want seq 7", seq, err)
	}

	old, seq, err := s.Delete(ctx, "inbox", "a")
	if err != nil || old == nil || !reflect.DeepEqual(*old, want) || seq != 8 {
		t.Fatalf("Delete(a) = %+v, %d, %v", old, seq, err)
	}
	if old, seq, err = s.Delete(ctx, "inbox", "a"); err != nil || old != nil || seq != 0 {
		t.Fatalf("Delete(a) again = %+v, %d, %v; want nil, 0", old, seq, err)
	}
	if _, found, err := s.Get(ctx, "inbox", "a"); err != nil || found {
		t.Fatalf("Get after Delete: found %v, %v", found, err)
	}
	p, err := s.List(ctx, "inbox")
	if err != nil || len(p.Items) != 1 || p.Items[0].ID != "fresh" || p.Seq != 8 || p.More {
		t.Fatalf("List(inbox) = %+v, %v", p, err)
	}
}

func TestStreamNullAndRawValues(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()

	ptrs := trine.NewStream[*todo](w, "ptrs")
	if _, err := ptrs.Set(ctx, "g", "nil", nil); err != nil {
		t.Fatal(err)
	}
	it, found, err := ptrs.Get(ctx, "g", "nil")
	if err != nil || !found || it.Data != nil || it.Seq != 1 {
		t.Fatalf("Get of a stored null = %+v, %v, %v; want found with nil data", it, found, err)
	}

	raw := trine.NewStream[json.RawMessage](w, "raw")
	ch, err := raw.Set(ctx, "g", "i", json.RawMessage(`{"x":[1,2.50,"y"]}`))
	if err != nil || string(ch.New) != `{"x":[1,2.50,"y"]}` {
		t.Fatalf("Set(raw) = %s, %v", ch.New, err)
	}
	_, err = raw.Set(ctx, "g", "i", json.RawMessage(`{not json`))
	wantCode(t, err, trine.CodeInvalidArgument)
}

func TestStreamListPaging(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	s := trine.NewStream[todo](w, "big")
	ctx := t.Context()

	const n = 1203 // three pages for All
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("item-%04d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for part := range 8 {
		wg.Go(func() {
			for i := part; i < n; i += 8 {
				if _, err := s.Set(ctx, "g", ids[i], todo{Title: ids[i], N: i}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Set = %v", err)
	}

	var got []string
	after := ""
	for pages := 0; ; pages++ {
		opts := []trine.ListOption{trine.WithLimit(100)}
		if after != "" {
			opts = append(opts, trine.WithAfter(after))
		}
		p, err := s.List(ctx, "g", opts...)
		if err != nil {
			t.Fatalf("List page %d = %v", pages, err)
		}
		if p.Seq != n {
			t.Fatalf("page %d read at seq %d, want %d", pages, p.Seq, n)
		}
		for _, it := range p.Items {
			if it.Data.Title != it.ID || it.Seq == 0 {
				t.Fatalf("page %d item %+v", pages, it)
			}
			got = append(got, it.ID)
		}
		if !p.More {
			if len(p.Items) != n%100 {
				t.Fatalf("last page has %d items, want %d", len(p.Items), n%100)
			}
			break
		}
		if len(p.Items) != 100 {
			t.Fatalf("page %d has %d items and more follow", pages, len(p.Items))
		}
		after = p.Items[len(p.Items)-1].ID
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("paged ids: %d ids, in order %v", len(got), slices.IsSorted(got))
	}

	p, err := s.List(ctx, "g", trine.WithAfter("item-1200"))
	if err != nil || len(p.Items) != 2 || p.Items[0].ID != "item-1201" || p.More {
		t.Fatalf("List(After(item-1200)) = %+v, %v", p, err)
	}
	if p, err = s.List(ctx, "g"); err != nil || len(p.Items) != n || p.More {
		t.Fatalf("List() without a limit: %d items, more %v, %v", len(p.Items), p.More, err)
	}
	if p, err = s.List(ctx, "empty"); err != nil || p.Items == nil || len(p.Items) != 0 || p.More {
		t.Fatalf("List(empty group) = %+v, %v", p, err)
	}
	_, err = s.List(ctx, "g", trine.WithLimit(-1))
	wantCode(t, err, trine.CodeInvalidArgument)

	got = got[:0]
	for it, err := range s.All(ctx, "g") {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		got = append(got, it.ID)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("All yielded %d ids, want %d in order", len(got), n)
	}
	count := 0
	for range s.All(ctx, "g") {
		if count++; count == 3 {
			break
		}
	}
	for _, err := range trine.NewStream[todo](nil, "x").All(ctx, "g") {
		wantCode(t, err, trine.CodeInvalidArgument)
	}
}

func TestStreamIfSeqConflict(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	s := trine.NewStream[todo](w, "cas")
	ctx := t.Context()

	if _, err := s.Set(ctx, "g", "i", todo{Title: "v1"}, trine.WithIfSeq(0)); err != nil {
		t.Fatalf("Set(WithIfSeq(0)) of a new item = %v", err)
	}
	_, err := s.Set(ctx, "g", "i", todo{Title: "v2"}, trine.WithIfSeq(0))
	if !errors.Is(err, trine.ErrConflict) {
		t.Fatalf("Set(WithIfSeq(0)) of an existing item = %v; want conflict", err)
	}
	wantCode(t, err, trine.CodeConflict)
	_, err = s.Set(ctx, "g", "i", todo{Title: "v2"}, trine.WithIfSeq(7))
	if !errors.Is(err, trine.ErrConflict) {
		t.Fatalf("Set(WithIfSeq(7)) = %v; want conflict", err)
	}
	_, err = s.Update(ctx, "g", "i", []trine.UpdateOp{trine.OpSet("title", "v2")}, trine.WithIfSeq(2))
	if !errors.Is(err, trine.ErrConflict) {
		t.Fatalf("Update(WithIfSeq(2)) = %v; want conflict", err)
	}
	_, _, err = s.Delete(ctx, "g", "i", trine.WithIfSeq(9))
	if !errors.Is(err, trine.ErrConflict) {
		t.Fatalf("Delete(WithIfSeq(9)) = %v; want conflict", err)
	}
	it, _, err := s.Get(ctx, "g", "i")
	if err != nil || it.Data.Title != "v1" || it.Seq != 1 {
		t.Fatalf("after refused writes: %+v, %v; want v1 at seq 1", it, err)
	}
	if p, err := s.List(ctx, "g"); err != nil || p.Seq != 1 {
		t.Fatalf("refused writes advanced the group sequence: %+v, %v", p, err)
	}

	ch, err := s.Set(ctx, "g", "i", todo{Title: "v2"}, trine.WithIfSeq(1))
	if err != nil || ch.Seq != 2 {
		t.Fatalf("Set(WithIfSeq(1)) = %+v, %v", ch, err)
	}
	if ch, err = s.Update(ctx, "g", "i", []trine.UpdateOp{trine.OpSet("title", "v3")}, trine.WithIfSeq(ch.Seq)); err != nil || ch.New.Title != "v3" {
		t.Fatalf("Update(WithIfSeq(2)) = %+v, %v", ch, err)
	}
	if old, _, err := s.Delete(ctx, "g", "i", trine.WithIfSeq(ch.Seq)); err != nil || old == nil || old.Title != "v3" {
		t.Fatalf("Delete(WithIfSeq(3)) = %+v, %v", old, err)
	}
}

func TestStreamUpdateInvalidOp(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	s := trine.NewStream[todo](w, "ops")
	ctx := t.Context()
	if _, err := s.Set(ctx, "g", "i", todo{Title: "t", N: 1}); err != nil {
		t.Fatal(err)
	}
	for name, ops := range map[string][]trine.UpdateOp{
		"increment a string":          {trine.OpIncrement("n", 1), trine.OpIncrement("title", 1)},
		"append a number to a string": {trine.OpAppend([]string{"title"}, 1)},
		"prototype pollution":         {trine.OpSet("__proto__", 1)},
		"merge over proto":            {trine.OpMerge(nil, map[string]any{"__proto__": 1})},
		"empty path segment":          {trine.OpMerge([]string{"a", ""}, map[string]any{"x": 1})},
		"zero op":                     {trine.OpSet("n", 2), {}},
	} {
		_, err := s.Update(ctx, "g", "i", ops)
		if !errors.Is(err, trine.ErrInvalidArgument) {
			t.Fatalf("%s: Update = %v; want invalid_argument", name, err)
		}
	}
	it, _, err := s.Get(ctx, "g", "i")
	if err != nil || !reflect.DeepEqual(it, trine.Item[todo]{ID: "i", Data: todo{Title: "t", N: 1}, Seq: 1}) {
		t.Fatalf("refused updates changed the item: %+v, %v", it, err)
	}
}

func TestUpdateOpWire(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		op   trine.UpdateOp
		want string
	}{
		{trine.OpSet("a", 1), `{"type":"set","path":"a","value":1}`},
		{trine.OpSet("", nil), `{"type":"set","path":"","value":null}`},
		{trine.OpMerge([]string{"a", "b"}, map[string]any{"x": true}), `{"type":"merge","path":["a","b"],"value":{"x":true}}`},
		{trine.OpMerge(nil, map[string]any{"x": 1}), `{"type":"merge","value":{"x":1}}`},
		{trine.OpMerge([]string{}, nil), `{"type":"merge","value":{}}`},
		{trine.OpIncrement("n", 1), `{"type":"increment","path":"n","by":1}`},
		{trine.OpDecrement("n", -9007199254740993), `{"type":"decrement","path":"n","by":-9007199254740993}`},
		{trine.OpAppend([]string{"a"}, 1), `{"type":"append","path":["a"],"value":1}`},
		{trine.OpAppend(nil, "x"), `{"type":"append","value":"x"}`},
		{trine.OpRemove("a"), `{"type":"remove","path":"a"}`},
	} {
		got, err := json.Marshal(c.op)
		if err != nil || string(got) != c.want {
			t.Errorf("Marshal = %s, %v; want %s", got, err, c.want)
		}
	}
	if _, err := json.Marshal(trine.UpdateOp{}); err == nil {
		t.Error("the zero UpdateOp marshalled")
	}
	path := []string{"a"}
	op := trine.OpAppend(path, 1)
	path[0] = "changed"
	if got, _ := json.Marshal(op); string(got) != `{"type":"append","path":["a"],"value":1}` {
		t.Errorf("OpAppend kept the caller's slice: %s", got)
	}
}

// The ops do what their names say, applied by the engine.
func TestStreamUpdateOps(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	s := trine.NewStream[map[string]any](w, "docs")
	ctx := t.Context()
	ch, err := s.Update(ctx, "g", "d", []trine.UpdateOp{
		trine.OpSet("keep", "x"),
		trine.OpSet("gone", 1),
		trine.OpMerge(nil, map[string]any{"top": 1}),
		trine.OpMerge([]string{"a", "b"}, map[string]any{"c": "deep"}),
		trine.OpAppend([]string{"a", "list"}, 1),
		trine.OpAppend([]string{"a", "list"}, 2),
		trine.OpIncrement("count", 10),
		trine.OpDecrement("count", 3),
		trine.OpRemove("gone"),
	})
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	got, _ := json.Marshal(ch.New)
	if want := `{"a":{"b":{"c":"deep"},"list":[1,2]},"count":7,"keep":"x","top":1}`; string(got) != want {
		t.Fatalf("Update result = %s, want %s", got, want)
	}

	n := trine.NewStream[int](w, "counters")
	if ch, err := n.Update(ctx, "g", "c", []trine.UpdateOp{trine.OpIncrement("", 41), trine.OpIncrement("", 1)}); err != nil || ch.New != 42 {
		t.Fatalf("root increment = %+v, %v", ch, err)
	}
	l := trine.NewStream[[]int](w, "lists")
	if ch, err := l.Update(ctx, "g", "l", []trine.UpdateOp{trine.OpAppend(nil, 1), trine.OpAppend(nil, 2)}); err != nil || !slices.Equal(ch.New, []int{1, 2}) {
		t.Fatalf("root append = %+v, %v", ch, err)
	}
	str := trine.NewStream[string](w, "strings")
	if ch, err := str.Update(ctx, "g", "s", []trine.UpdateOp{trine.OpAppend(nil, "a"), trine.OpAppend(nil, "b")}); err != nil || ch.New != "ab" {
		t.Fatalf("root string append = %+v, %v", ch, err)
	}
}

func TestStreamHostileNames(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()
	names := []string{".", "*", ">", ":", "/", "a b", "🔥", "a.b", "stream::get(x)", `"quoted"`}
	for i, sn := range names {
		s := trine.NewStream[string](w, sn)
		for j, g := range names {
			v := fmt.Sprintf("%d/%d", i, j)
			if _, err := s.Set(ctx, g, g, v); err != nil {
				t.Fatalf("Set(%q, %q, %q) = %v", sn, g, g, err)
			}
		}
	}
	for i, sn := range names {
		s := trine.NewStream[string](w, sn)
		gs, err := s.Groups(ctx)
		if want := slices.Sorted(slices.Values(names)); err != nil || !slices.Equal(gs, want) {
			t.Fatalf("Groups(%q) = %q, %v", sn, gs, err)
		}
		for j, g := range names {
			want := fmt.Sprintf("%d/%d", i, j)
			it, found, err := s.Get(ctx, g, g)
			if err != nil || !found || it.ID != g || it.Data != want {
				t.Fatalf("Get(%q, %q, %q) = %+v, %v, %v", sn, g, g, it, found, err)
			}
			p, err := s.List(ctx, g)
			if err != nil || len(p.Items) != 1 || p.Items[0].ID != g || p.Items[0].Data != want {
				t.Fatalf("List(%q, %q) = %+v, %v", sn, g, p, err)
			}
		}
	}
}

func TestStreamBadInput(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()

	var zero *trine.Stream[todo]
	_, err := zero.Set(ctx, "g", "i", todo{})
	wantCode(t, err, trine.CodeInvalidArgument)
	nw := trine.NewStream[todo](nil, "s")
	_, _, err = nw.Get(ctx, "g", "i")
	wantCode(t, err, trine.CodeInvalidArgument)
	_, err = nw.Groups(ctx)
	wantCode(t, err, trine.CodeInvalidArgument)

	s := trine.NewStream[todo](w, "s")
	_, err = s.Set(ctx, "", "i", todo{})
	wantCode(t, err, trine.CodeInvalidArgument)
	_, _, err = s.Get(ctx, "g", "")
	wantCode(t, err, trine.CodeInvalidArgument)
	_, err = trine.NewStream[todo](w, "").Groups(ctx)
	wantCode(t, err, trine.CodeInvalidArgument)
	_, err = s.Send(ctx, "g", "evt", func() {})
	wantCode(t, err, trine.CodeInvalidArgument)
	_, err = trine.NewStream[chan int](w, "s").Set(ctx, "g", "i", make(chan int))
	wantCode(t, err, trine.CodeInvalidArgument)

	// A value that does not decode into T is reported, not zeroed.
	if _, err := trine.NewStream[string](w, "s").Set(ctx, "g", "str", "not a todo"); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Get(ctx, "g", "str")
	wantCode(t, err, trine.CodeInternal)
	_, err = s.List(ctx, "g")
	wantCode(t, err, trine.CodeInternal)
	_, err = s.Set(ctx, "g", "str", todo{Title: "fixed"})
	wantCode(t, err, trine.CodeInternal) // the old value does not decode either
	if it, _, err := s.Get(ctx, "g", "str"); err != nil || it.Data.Title != "fixed" {
		t.Fatalf("the write itself happened: %+v, %v", it, err)
	}
}
