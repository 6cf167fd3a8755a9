package contracts_test

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/trinehq/trine/streammodule/contracts"
)

// TestRefusalsBounded: a name keeps its newest refusals within its count
// and byte bounds, every name together within the total bytes, each text
// cut to a bound; a flood of refusals over many names with huge texts
// holds no more than the bounds, and a name whose last refusal went is
// forgotten.
//
// It does not run in parallel: it measures the heap.
func TestRefusalsBounded(t *testing.T) {
	s := contracts.NewMemorySet(contracts.Streams)
	s.KeepRefusals(contracts.RefusalLimits{PerName: 3, NameBytes: 6000, Bytes: 20000})
	for i := range 5 {
		s.Refuse("todos", contracts.Refusal{Function: "stream::set", Group: "g", Item: "i" + strconv.Itoa(i), Version: 2, Error: "/title: expected string, got number"})
	}
	got := s.Refusals("todos", 0)
	if got.Held != 3 || got.Refused != 5 || got.Dropped != 2 || len(got.Refusals) != 3 || got.Refusals[0].Item != "i4" || got.Refusals[2].Item != "i2" {
		t.Fatalf("Refusals(todos) = %+v, want the newest 3 of 5, newest first", got)
	}
	if got := s.Refusals("todos", 1); len(got.Refusals) != 1 || got.Refusals[0].Item != "i4" || got.Refusals[0].Time.IsZero() {
		t.Fatalf("Refusals(todos, 1) = %+v", got)
	}
	if got := s.Refusals("none", 0); got.Held != 0 || got.Refusals == nil {
		t.Fatalf("Refusals(none) = %+v, want an empty list", got)
	}
	// Texts are cut; a name's bytes bound holds before its count.
	huge := strings.Repeat("é", 100_000)
	for range 3 {
		s.Refuse("big", contracts.Refusal{Group: huge, Item: huge, Error: huge, Caller: contracts.Caller{Name: huge, Identity: huge}})
	}
	big := s.Refusals("big", 0)
	if big.Held != 2 {
		t.Fatalf("big: %d held, want 2 (6000 bytes a name)", big.Held)
	}
	if r := big.Refusals[0]; len(r.Error) > 512 || len(r.Item) > 512 || len(r.Caller.Identity) > 512 || !strings.HasSuffix(r.Error, "...") {
		t.Fatalf("texts not cut: error %d bytes, item %d", len(r.Error), len(r.Item))
	}
	// A flood over distinct names (each of which would need a contract
	// to be refused at all) stays within the total bytes.
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 100_000 {
		s.Refuse("flood-"+strconv.Itoa(i)+huge[:400], contracts.Refusal{Group: huge, Item: huge, Error: huge})
	}
	names, count, bytes := s.RefusalsHeld()
	if bytes > 20000 || count > 20000/256 || names > count {
		t.Fatalf("after a flood: %d names, %d refusals, %d bytes held; want at most 20000 bytes", names, count, bytes)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("after a flood the heap grew by %d bytes", grew)
	}
	if got := s.Refusals("todos", 0); got.Held != 0 {
		t.Fatalf("the flood left todos %+v; the oldest go first", got)
	}
}

// TestRefusalText keeps the pointer and the rule of a refusal, without
// the function or what it means.
func TestRefusalText(t *testing.T) {
	t.Parallel()
	s := contracts.NewMemorySet(contracts.Streams)
	if _, err := s.Define(t.Context(), def("todos", 1, `{"type":"object","properties":{"title":{"type":"string"}}}`)); err != nil {
		t.Fatal(err)
	}
	c, err := s.For(t.Context(), "stream::set", "todos")
	if err != nil {
		t.Fatal(err)
	}
	err = c.ValidateItem([]byte(`{"title":1}`))
	if got := contracts.RefusalText("stream::set", err); got != "/title: expected string, got number" {
		t.Fatalf("RefusalText(contract error) = %q", got)
	}
	if got := contracts.RefusalText("stream::set", contracts.Check("stream::set", c, []byte(`{"title":1}`))); got != "/title: expected string, got number" {
		t.Fatalf("RefusalText(engine error) = %q", got)
	}
}
