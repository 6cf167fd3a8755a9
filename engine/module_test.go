package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/trinehq/trine/engine"
)

// recModule records its lifecycle in a shared log.
type recModule struct {
	name   string
	log    *[]string
	failOn bool
}

func (m recModule) Register(*engine.Engine) error {
	*m.log = append(*m.log, "register "+m.name)
	if m.failOn {
		return errors.New("no")
	}
	return nil
}

func (m recModule) Close() error {
	*m.log = append(*m.log, "close "+m.name)
	return nil
}

func (m recModule) Drain(context.Context) { *m.log = append(*m.log, "drain "+m.name) }

func TestMountRegistersInOrderAndClosesInReverse(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	var log []string
	mods, err := e.Mount(recModule{name: "a", log: &log}, recModule{name: "b", log: &log})
	if err != nil {
		t.Fatal(err)
	}
	mods.Drain(t.Context())
	if err := mods.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"register a", "register b", "drain a", "drain b", "close b", "close a"}
	if !slices.Equal(log, want) {
		t.Fatalf("lifecycle = %q, want %q", log, want)
	}

	log = nil
	if _, err := e.Mount(recModule{name: "c", log: &log}, recModule{name: "d", log: &log, failOn: true}, recModule{name: "x", log: &log}); err == nil {
		t.Fatal("Mount with a failing module succeeded")
	}
	want = []string{"register c", "register d", "close x", "close d", "close c"}
	if !slices.Equal(log, want) {
		t.Fatalf("lifecycle after a failed Register = %q, want %q", log, want)
	}
}

func TestTriggerSetReplacesStopsAndWaits(t *testing.T) {
	t.Parallel()
	s := engine.NewTriggerSet[int]("the test module")
	var mu sync.Mutex
	var stopped []string
	start := func(id string, v int) error {
		stop := make(chan struct{})
		return s.Put(id, v, func() {
			mu.Lock()
			stopped = append(stopped, fmt.Sprintf("%s=%d", id, v))
			mu.Unlock()
			close(stop)
		}, func() { <-stop })
	}
	for _, c := range []struct {
		id string
		v  int
	}{{"a", 1}, {"b", 2}, {"a", 3}} {
		if err := start(c.id, c.v); err != nil {
			t.Fatal(err)
		}
	}
	if v, ok := s.Get("a"); !ok || v != 3 {
		t.Fatalf("Get(a) = %d, %v, want 3, true", v, ok)
	}
	if _, ok := s.Remove("b"); !ok {
		t.Fatal("Remove(b) = false")
	}
	n := 0
	for range s.All() {
		n++
	}
	if n != 1 {
		t.Fatalf("All yields %d triggers, want 1", n)
	}
	ran := make(chan struct{})
	if !s.Go(func() { close(ran) }) {
		t.Fatal("Go before Close = false")
	}
	<-ran
	s.Close()
	slices.Sort(stopped)
	if want := []string{"a=1", "a=3", "b=2"}; !slices.Equal(stopped, want) {
		t.Fatalf("stopped %q, want %q", stopped, want)
	}
	if err := start("c", 4); !errors.Is(err, engine.ErrUnavailable) || !strings.Contains(err.Error(), "the test module is stopped") {
		t.Fatalf("Put after Close = %v, want unavailable", err)
	}
	if s.Go(func() {}) {
		t.Fatal("Go after Close = true")
	}
	s.Close()
}

// TestTriggerSetIndexesByKey: an indexed set finds a key's triggers
// through In, follows a trigger that a replacement moves to another key,
// forgets removed and stopped ones, and RemoveIf removes only when its
// test holds. A trigger may have no stop function.
func TestTriggerSetIndexesByKey(t *testing.T) {
	t.Parallel()
	type trig struct{ stream, id string }
	s := engine.NewIndexedTriggerSet("the test module", func(v trig) string { return v.stream })
	in := func(key string) []string {
		var ids []string
		for id, v := range s.In(key) {
			if v.stream != key {
				t.Errorf("In(%q) yields %q of stream %q", key, id, v.stream)
			}
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	for _, v := range []trig{{"s1", "a"}, {"s1", "b"}, {"s2", "c"}, {"s2", "b"}} { // b moves to s2
		if err := s.Put(v.id, v, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := in("s1"), []string{"a"}; !slices.Equal(got, want) {
		t.Fatalf("In(s1) = %q, want %q", got, want)
	}
	if got, want := in("s2"), []string{"b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("In(s2) = %q, want %q", got, want)
	}
	if _, ok := s.RemoveIf("c", func(v trig) bool { return v.stream == "s1" }); ok {
		t.Fatal("RemoveIf removed c although its test fails")
	}
	if v, ok := s.RemoveIf("c", func(v trig) bool { return v.stream == "s2" }); !ok || v.id != "c" {
		t.Fatalf("RemoveIf(c) = %v, %v, want c, true", v, ok)
	}
	if _, ok := s.RemoveIf("nope", func(trig) bool { return true }); ok {
		t.Fatal("RemoveIf of an unknown id = true")
	}
	s.Remove("a")
	if got := in("s1"); len(got) != 0 {
		t.Fatalf("In(s1) after Remove = %q, want none", got)
	}
	if got, want := in("s2"), []string{"b"}; !slices.Equal(got, want) {
		t.Fatalf("In(s2) = %q, want %q", got, want)
	}
	s.Close()
	if got := in("s2"); len(got) != 0 {
		t.Fatalf("In(s2) after Close = %q, want none", got)
	}
	// An unindexed set has nothing under any key.
	if u := engine.NewTriggerSet[trig]("the test module"); u.Put("x", trig{"s1", "x"}, nil, nil) != nil {
		t.Fatal("Put on an unindexed set failed")
	} else {
		for id := range u.In("s1") {
			t.Fatalf("In on an unindexed set yields %q", id)
		}
		u.Close()
	}
}

func TestConditionSkipsOnlyOnFalse(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	for id, out := range map[string]string{"cond::false": " false\n", "cond::true": "true", "cond::null": "null"} {
		if err := e.RegisterFunction(id, "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) { return []byte(out), nil })); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.RegisterFunction("cond::fail", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("boom")
	})); err != nil {
		t.Fatal(err)
	}
	tr := engine.Trigger{ID: "t", Type: "x", FunctionID: "f"}
	for _, c := range []struct {
		fn      string
		want    bool
		wantErr bool
	}{{"", true, false}, {"cond::false", false, false}, {"cond::true", true, false}, {"cond::null", true, false}, {"cond::fail", false, true}} {
		ok, err := e.Condition(t.Context(), tr, c.fn, engine.Call{Payload: []byte("{}")})
		if ok != c.want || (err != nil) != c.wantErr {
			t.Errorf("Condition(%q) = %v, %v; want %v, error %v", c.fn, ok, err, c.want, c.wantErr)
		}
	}
	if err := engine.ValidateCondition(" bad\n"); err == nil {
		t.Error("ValidateCondition(bad) = nil")
	}
}

func TestWatchFunctionsSeesThemComeAndGo(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	h := engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) { return nil, nil })
	if err := e.RegisterFunction("w::builtin", "", h); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	e.WatchFunctions("w::", func(id string, served bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %v", id, served))
	})
	s1, _ := attach(t, e, "one", "w::f", "other::g")
	s2, _ := attach(t, e, "two", "w::f")
	s1.Close()
	s2.Close()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"w::builtin true", "w::f true", "w::f false"}
	if !slices.Equal(seen, want) {
		t.Fatalf("watch saw %q, want %q", seen, want)
	}
}
