package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
	trine "github.com/trinehq/trine/worker-sdk"
)

// memBackend is a StreamBackend over maps, counting the calls it serves.
type memBackend struct {
	mu     sync.Mutex
	groups map[string]map[string]json.RawMessage
	calls  map[string]int
	fail   error           // returned by every call when set
	bad    json.RawMessage // returned by Get when set
}

func newMemBackend() *memBackend {
	return &memBackend{groups: map[string]map[string]json.RawMessage{}, calls: map[string]int{}}
}

func (b *memBackend) count(op string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[op]
}

func (b *memBackend) value(group, id string) (json.RawMessage, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.groups[group][id]
	return v, ok
}

func (b *memBackend) begin(op string) error {
	b.calls[op]++
	return b.fail
}

func (b *memBackend) Get(_ context.Context, group, id string) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("get"); err != nil {
		return nil, err
	}
	if b.bad != nil {
		return b.bad, nil
	}
	return b.groups[group][id], nil
}

func (b *memBackend) Set(_ context.Context, group, id string, v json.RawMessage) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("set"); err != nil {
		return nil, err
	}
	g := b.groups[group]
	if g == nil {
		g = map[string]json.RawMessage{}
		b.groups[group] = g
	}
	old := g[id]
	g[id] = append(json.RawMessage(nil), v...)
	return old, nil
}

func (b *memBackend) Delete(_ context.Context, group, id string) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("delete"); err != nil {
		return nil, err
	}
	old := b.groups[group][id]
	delete(b.groups[group], id)
	if len(b.groups[group]) == 0 {
		delete(b.groups, group)
	}
	return old, nil
}

func (b *memBackend) List(_ context.Context, group string) ([]json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("list"); err != nil {
		return nil, err
	}
	g := b.groups[group]
	var out []json.RawMessage
	for _, id := range slices.Sorted(maps.Keys(g)) {
		out = append(out, g[id])
	}
	return out, nil
}

func (b *memBackend) ListGroups(context.Context) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("list_groups"); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(b.groups)), nil
}

// call triggers fn with a JSON payload and fails the test on error.
func call(t *testing.T, w *trine.Worker, fn string, payload map[string]any) string {
	t.Helper()
	out, err := w.Trigger(t.Context(), fn, payload)
	if err != nil {
		t.Fatalf("Trigger(%s, %v) = %v", fn, payload, err)
	}
	return string(out)
}

func TestServeStream(t *testing.T) {
	t.Parallel()
	srv, m := startStreamEngine(t)
	owner := connect(t, srv.Addr, trine.WithName("owner"))
	b := newMemBackend()
	if err := owner.ServeStream(t.Context(), "ext", b); err != nil {
		t.Fatalf("ServeStream = %v", err)
	}
	for _, op := range []string{"get", "set", "delete", "list", "list_groups"} {
		if id := streammodule.CustomFunctionID(op, "ext"); !srv.Engine.HasFunction(id) {
			t.Fatalf("%s is not registered", id)
		}
	}
	if srv.Engine.HasFunction(streammodule.CustomFunctionID("update", "ext")) {
		t.Fatal("ServeStream registered an update function")
	}
	caller := connect(t, srv.Addr, trine.WithName("caller"))
	k := func(extra map[string]any) map[string]any {
		in := map[string]any{"stream_name": "ext", "group_id": "g", "item_id": "i"}
		maps.Copy(in, extra)
		return in
	}

	if got := call(t, caller, "stream::get", k(nil)); got != "null" || b.count("get") != 1 {
		t.Fatalf("get of a missing item = %s (backend gets %d)", got, b.count("get"))
	}
	if got := call(t, caller, "stream::set", k(map[string]any{"data": map[string]int{"n": 1}})); got != `{"old_value":null,"new_value":{"n":1},"seq":1}` {
		t.Fatalf("set = %s", got)
	}
	if v, _ := b.value("g", "i"); string(v) != `{"n":1}` {
		t.Fatalf("the backend holds %s", v)
	}
	if it, _, err := m.Store().Get(t.Context(), store.Key{Stream: "ext", Group: "g", Item: "i"}); err != nil || it.Value != nil {
		t.Fatalf("the built-in store holds %s, %v; want nothing", it.Value, err)
	}
	if got := call(t, caller, "stream::set", k(map[string]any{"data": map[string]int{"n": 2}})); got != `{"old_value":{"n":1},"new_value":{"n":2},"seq":2}` {
		t.Fatalf("second set = %s", got)
	}
	if got := call(t, caller, "stream::get", k(nil)); got != `{"n":2}` {
		t.Fatalf("get = %s", got)
	}
	if got := call(t, caller, "stream::update", k(map[string]any{"ops": []trine.UpdateOp{trine.OpIncrement("n", 40)}})); got != `{"old_value":{"n":2},"new_value":{"n":42},"seq":3}` {
		t.Fatalf("update = %s", got)
	}
	if b.count("get") != 3 || b.count("set") != 3 {
		t.Fatalf("update did not go through the backend: %d gets, %d sets", b.count("get"), b.count("set"))
	}
	call(t, caller, "stream::set", map[string]any{"stream_name": "ext", "group_id": "h", "item_id": "j", "data": "x"})
	if got := call(t, caller, "stream::list", map[string]any{"stream_name": "ext", "group_id": "g"}); got != `[{"n":42}]` {
		t.Fatalf("list = %s", got)
	}
	if got := call(t, caller, "stream::list_groups", map[string]any{"stream_name": "ext"}); got != `["g","h"]` {
		t.Fatalf("list_groups = %s", got)
	}
	if got := call(t, caller, "stream::delete", k(nil)); got != `{"old_value":{"n":42},"seq":4}` {
		t.Fatalf("delete = %s", got)
	}
	if got := call(t, caller, "stream::delete", k(nil)); got != `{"old_value":null}` {
		t.Fatalf("delete of a missing item = %s", got)
	}
	if _, ok := b.value("g", "i"); ok {
		t.Fatal("the backend still holds the deleted item")
	}

	// The typed helpers write through the backend too.
	s := trine.NewStream[todo](caller, "ext")
	ch, err := s.Set(t.Context(), "g", "t", todo{Title: "typed"})
	if err != nil || ch.Old != nil || ch.New.Title != "typed" || ch.Seq != 5 {
		t.Fatalf("typed Set = %+v, %v", ch, err)
	}
	if ch, err = s.Update(t.Context(), "g", "t", []trine.UpdateOp{trine.OpSet("done", true)}); err != nil || ch.Old == nil || !ch.New.Done || ch.Seq != 6 {
		t.Fatalf("typed Update = %+v, %v", ch, err)
	}
	if gs, err := s.Groups(t.Context()); err != nil || !slices.Equal(gs, []string{"g", "h"}) {
		t.Fatalf("typed Groups = %q, %v", gs, err)
	}
	if old, seq, err := s.Delete(t.Context(), "g", "t"); err != nil || old == nil || !old.Done || seq != 7 {
		t.Fatalf("typed Delete = %+v, %d, %v", old, seq, err)
	}

	// A bad update op is refused before the backend sees anything.
	sets := b.count("set")
	_, err = caller.Trigger(t.Context(), "stream::update", k(map[string]any{"ops": []map[string]any{{"type": "nope"}}}))
	wantCode(t, err, trine.CodeInvalidArgument)
	call(t, caller, "stream::set", k(map[string]any{"data": "text"}))
	_, err = s.Update(t.Context(), "g", "i", []trine.UpdateOp{trine.OpIncrement("", 1)})
	wantCode(t, err, trine.CodeInvalidArgument)
	if b.count("set") != sets+1 {
		t.Fatalf("refused updates reached the backend's Set: %d sets, want %d", b.count("set"), sets+1)
	}

	// The backend cannot check sequences: if_seq is refused, not ignored.
	_, err = caller.Trigger(t.Context(), "stream::set", k(map[string]any{"data": 1, "if_seq": 1}))
	wantCode(t, err, trine.CodeInvalidArgument)
	_, _, err = s.Delete(t.Context(), "g", "i", trine.WithIfSeq(3))
	wantCode(t, err, trine.CodeInvalidArgument)
	if v, _ := b.value("g", "i"); string(v) != `"text"` {
		t.Fatalf("a refused write changed the backend: %s", v)
	}
}

func TestServeStreamErrors(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	b := newMemBackend()
	if err := w.ServeStream(t.Context(), "ext", b); err != nil {
		t.Fatal(err)
	}
	get := map[string]any{"stream_name": "ext", "group_id": "g", "item_id": "i"}

	b.mu.Lock()
	b.fail = &trine.Error{Code: trine.CodeForbidden, Message: "read only"}
	b.mu.Unlock()
	_, err := w.Trigger(t.Context(), "stream::set", map[string]any{"stream_name": "ext", "group_id": "g", "item_id": "i", "data": 1})
	wantCode(t, err, trine.CodeForbidden)
	b.mu.Lock()
	b.fail = errors.New("disk on fire")
	b.mu.Unlock()
	_, err = w.Trigger(t.Context(), "stream::get", get)
	wantCode(t, err, trine.CodeHandlerError)
	if !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("the backend's error is lost: %v", err)
	}
	b.mu.Lock()
	b.fail, b.bad = nil, json.RawMessage(`{bad`)
	b.mu.Unlock()
	_, err = w.Trigger(t.Context(), "stream::get", get)
	wantCode(t, err, trine.CodeHandlerError)

	// Direct calls with bad input are refused.
	for _, in := range []any{
		map[string]any{"stream_name": "other", "group_id": "g", "item_id": "i"},
		map[string]any{"stream_name": "ext", "item_id": "i"},
		map[string]any{"stream_name": "ext", "group_id": "g"},
		"not an object",
	} {
		_, err := w.Trigger(t.Context(), streammodule.CustomFunctionID("get", "ext"), in)
		wantCode(t, err, trine.CodeInvalidArgument)
	}
	_, err = w.Trigger(t.Context(), streammodule.CustomFunctionID("set", "ext"), map[string]any{"group_id": "g", "item_id": "i"})
	wantCode(t, err, trine.CodeInvalidArgument)

	wantCode(t, w.ServeStream(t.Context(), "", b), trine.CodeInvalidArgument)
	wantCode(t, w.ServeStream(t.Context(), "x", nil), trine.CodeInvalidArgument)
	unusable := trine.RegisterWorker("")
	defer unusable.Close()
	wantCode(t, unusable.ServeStream(t.Context(), "x", b), trine.CodeInvalidArgument)
}

// When the engine refuses one of the functions, ServeStream withdraws the
// others and the stream is served by the built-in store again.
func TestServeStreamRefusedRollsBack(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	b := newMemBackend()
	name := strings.Repeat("n", 240) // stream::get(…) fits in 256 bytes, stream::list_groups(…) does not
	err := w.ServeStream(t.Context(), name, b)
	wantCode(t, err, trine.CodeInvalidArgument)
	if !strings.Contains(err.Error(), "list_groups") {
		t.Fatalf("the error does not name the refused function: %v", err)
	}
	for _, op := range []string{"get", "list", "list_groups", "set", "delete"} {
		if id := streammodule.CustomFunctionID(op, name); srv.Engine.HasFunction(id) {
			t.Fatalf("%s is still registered", id)
		}
	}
	out := call(t, w, "stream::set", map[string]any{"stream_name": name, "group_id": "g", "item_id": "i", "data": 1})
	if out != `{"old_value":null,"new_value":1,"seq":1}` || b.count("set") != 0 {
		t.Fatalf("set = %s, backend sets %d; want the built-in store", out, b.count("set"))
	}
}

func TestServeStreamHostileNames(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	owner := connect(t, srv.Addr)
	caller := connect(t, srv.Addr)
	names := []string{".", "*", ">", ":", "/", "a b", "🔥", "a)b(", "stream::get(x)"}
	backends := make([]*memBackend, len(names))
	for i, name := range names {
		backends[i] = newMemBackend()
		if err := owner.ServeStream(t.Context(), name, backends[i]); err != nil {
			t.Fatalf("ServeStream(%q) = %v", name, err)
		}
	}
	for i, name := range names {
		for j, g := range names {
			want := fmt.Sprintf(`{"old_value":null,"new_value":"%d/%d","seq":1}`, i, j)
			got := call(t, caller, "stream::set", map[string]any{"stream_name": name, "group_id": g, "item_id": g, "data": fmt.Sprintf("%d/%d", i, j)})
			if got != want {
				t.Fatalf("set(%q, %q) = %s, want %s", name, g, got, want)
			}
		}
	}
	for i, name := range names {
		if gs, err := trine.NewStream[string](caller, name).Groups(t.Context()); err != nil || !slices.Equal(gs, slices.Sorted(slices.Values(names))) {
			t.Fatalf("Groups(%q) = %q, %v", name, gs, err)
		}
		for j, g := range names {
			v, ok := backends[i].value(g, g)
			want := fmt.Sprintf(`"%d/%d"`, i, j)
			if !ok || string(v) != want {
				t.Fatalf("backend %q holds %s for %q, want %s", name, v, g, want)
			}
			if got := call(t, caller, "stream::get", map[string]any{"stream_name": name, "group_id": g, "item_id": g}); got != want {
				t.Fatalf("get(%q, %q) = %s, want %s", name, g, got, want)
			}
			if got := call(t, caller, "stream::list", map[string]any{"stream_name": name, "group_id": g}); got != "["+want+"]" {
				t.Fatalf("list(%q, %q) = %s", name, g, got)
			}
		}
	}
}

// The custom stream's functions are replayed like any other registration:
// after an engine restart the stream is served by the backend again.
func TestServeStreamSurvivesRestart(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	b := newMemBackend()
	if err := w.ServeStream(t.Context(), "ext", b); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	registerStreams(t, srv.Engine)
	caller := connect(t, srv.Addr)
	poll.CheckFor(t, 10*time.Second, poll.Holds("the custom stream to be served again", func() bool {
		for _, op := range []string{"get", "list", "list_groups", "set", "delete"} {
			if !srv.Engine.HasFunction(streammodule.CustomFunctionID(op, "ext")) {
				return false
			}
		}
		return true
	}))
	s := trine.NewStream[int](caller, "ext")
	ch, err := s.Set(t.Context(), "g", "i", 7)
	if err != nil || ch.Seq != 1 || b.count("set") != 1 {
		t.Fatalf("Set after the restart = %+v, %v; backend sets %d", ch, err, b.count("set"))
	}
	if gs, err := s.Groups(t.Context()); err != nil || !reflect.DeepEqual(gs, []string{"g"}) {
		t.Fatalf("Groups = %q, %v", gs, err)
	}
}
