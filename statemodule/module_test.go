package statemodule_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/statemodule/statebus"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
	"github.com/trinehq/trine/triggerapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	e *engine.Engine
	m *statemodule.Module
}

// start runs an engine with the state module on open (memory by default).
func start(t *testing.T, cfg statemodule.Config) *env {
	t.Helper()
	e := moduletest.Start(t, "")
	if cfg.OpenStore == nil {
		cfg.OpenStore = func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }
	}
	m, err := statemodule.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &env{e: e, m: m}
}

func (v *env) call(fn, payload string) (string, error) {
	out, err := v.e.Trigger(context.Background(), engine.Call{FunctionID: fn, Payload: []byte(payload)})
	return string(out), err
}

func (v *env) must(t *testing.T, fn, payload string) string {
	t.Helper()
	out, err := v.call(fn, payload)
	if err != nil {
		t.Fatalf("%s %s: %v", fn, payload, err)
	}
	return out
}

func wantCode(t *testing.T, err error, code engine.Code) {
	t.Helper()
	if e := engine.AsError(err); err == nil || e.Code != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
}

func wantJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("result %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestFunctionShapes(t *testing.T) {
	t.Parallel()
	v := start(t, statemodule.Config{})
	wantJSON(t, v.must(t, "state::get", `{"scope":"users","key":"u1"}`), `null`)
	wantJSON(t, v.must(t, "state::set", `{"scope":"users","key":"u1","value":{"name":"Ada"}}`), `{"old_value":null,"new_value":{"name":"Ada"},"seq":1}`)
	wantJSON(t, v.must(t, "state::set", `{"scope":"users","key":"u1","value":{"name":"Ada","n":1}}`), `{"old_value":{"name":"Ada"},"new_value":{"name":"Ada","n":1},"seq":2}`)
	wantJSON(t, v.must(t, "state::get", `{"scope":"users","key":"u1"}`), `{"name":"Ada","n":1}`)
	wantJSON(t, v.must(t, "state::get", `{"scope":"users","key":"u1","include_seq":true}`), `{"key":"u1","value":{"name":"Ada","n":1},"seq":2}`)
	wantJSON(t, v.must(t, "state::update", `{"scope":"users","key":"u1","ops":[{"type":"increment","path":"n","by":2},{"type":"set","path":"name","value":"Grace"}]}`),
		`{"old_value":{"name":"Ada","n":1},"new_value":{"name":"Grace","n":3},"seq":3}`)
	wantJSON(t, v.must(t, "state::update", `{"scope":"users","key":"u2","ops":[{"type":"set","path":"","value":[1]}]}`), `{"old_value":null,"new_value":[1],"seq":4}`)
	v.must(t, "state::set", `{"scope":"orders","key":"o1","value":7}`)
	wantJSON(t, v.must(t, "state::list", `{"scope":"users"}`), `[{"name":"Grace","n":3},[1]]`)
	wantJSON(t, v.must(t, "state::list", `{"scope":"users","limit":1}`), `{"items":[{"key":"u1","value":{"name":"Grace","n":3},"seq":3}],"seq":4,"more":true}`)
	wantJSON(t, v.must(t, "state::list", `{"scope":"users","after":"u1"}`), `{"items":[{"key":"u2","value":[1],"seq":4}],"seq":4,"more":false}`)
	wantJSON(t, v.must(t, "state::list", `{"scope":"none"}`), `[]`)
	wantJSON(t, v.must(t, "state::list_groups", `{}`), `{"groups":["orders","users"]}`)
	wantJSON(t, v.must(t, "state::list_groups", ``), `{"groups":["orders","users"]}`)
	wantJSON(t, v.must(t, "state::delete", `{"scope":"users","key":"u2"}`), `{"old_value":[1],"value":[1],"seq":5}`)
	wantJSON(t, v.must(t, "state::delete", `{"scope":"users","key":"u2"}`), `{"old_value":null,"value":null}`)
	v.must(t, "state::delete", `{"scope":"orders","key":"o1"}`)
	wantJSON(t, v.must(t, "state::list_groups", `{}`), `{"groups":["users"]}`)
}

func TestIfSeq(t *testing.T) {
	t.Parallel()
	v := start(t, statemodule.Config{})
	v.must(t, "state::set", `{"scope":"s","key":"k","value":1,"if_seq":0}`)
	_, err := v.call("state::set", `{"scope":"s","key":"k","value":2,"if_seq":0}`)
	wantCode(t, err, codes.Conflict)
	_, err = v.call("state::update", `{"scope":"s","key":"k","ops":[{"type":"increment","path":"","by":1}],"if_seq":7}`)
	wantCode(t, err, codes.Conflict)
	_, err = v.call("state::delete", `{"scope":"s","key":"k","if_seq":2}`)
	wantCode(t, err, codes.Conflict)
	wantJSON(t, v.must(t, "state::get", `{"scope":"s","key":"k","include_seq":true}`), `{"key":"k","value":1,"seq":1}`)
	v.must(t, "state::update", `{"scope":"s","key":"k","ops":[{"type":"increment","path":"","by":1}],"if_seq":1}`)
	v.must(t, "state::delete", `{"scope":"s","key":"k","if_seq":2}`)
}

// TestBadInputChangesNothing: every refused call leaves the state as it
// was, and no trigger fires for it.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	v := start(t, statemodule.Config{MaxValueBytes: 64, MaxNameBytes: 16})
	fired := make(chan string, 16)
	onChange(t, v.e, "test::on", fired)
	register(t, v.e, engine.Trigger{ID: "all", Type: "state", FunctionID: "test::on"})
	v.must(t, "state::set", `{"scope":"s","key":"k","value":{"a":1}}`)
	<-fired
	big := `"` + strings.Repeat("x", 80) + `"`
	for _, c := range []struct {
		fn, in string
		code   engine.Code
	}{
		{"state::set", `{"scope":"s","key":"k","value":` + big + `}`, codes.ValueTooLarge},
		{"state::update", `{"scope":"s","key":"k","ops":[{"type":"set","path":"a","value":` + big + `}]}`, codes.ValueTooLarge},
		{"state::update", `{"scope":"s","key":"k","ops":[{"type":"set","path":"b","value":1},{"type":"append","path":"a","value":2}]}`, codes.InvalidArgument},
		{"state::update", `{"scope":"s","key":"k","ops":[{"type":"explode"}]}`, codes.InvalidArgument},
		{"state::update", `{"scope":"s","key":"k"}`, codes.InvalidArgument},
		{"state::set", `{"scope":"s","key":"k"}`, codes.InvalidArgument},
		{"state::set", `{"scope":"s","value":1}`, codes.InvalidArgument},
		{"state::set", `{"key":"k","value":1}`, codes.InvalidArgument},
		{"state::set", `{"scope":"","key":"k","value":1}`, codes.InvalidArgument},
		{"state::set", `{"scope":"s","key":"` + strings.Repeat("k", 17) + `","value":1}`, codes.InvalidArgument},
		{"state::set", "{\"scope\":\"s\xff\",\"key\":\"k\",\"value\":1}", codes.InvalidArgument},
		{"state::set", `{"scope":"s","key":"k","value":1`, codes.InvalidArgument},
		{"state::set", `[1]`, codes.InvalidArgument},
		{"state::set", `{"scope":1,"key":"k","value":1}`, codes.InvalidArgument},
		{"state::list", `{"scope":"s","limit":-1}`, codes.InvalidArgument},
		{"state::delete", `{"scope":"s"}`, codes.InvalidArgument},
		{"state::get", `{"key":"k"}`, codes.InvalidArgument},
	} {
		_, err := v.call(c.fn, c.in)
		if e := engine.AsError(err); err == nil || e.Code != c.code {
			t.Errorf("%s %.60s: got %v, want %s", c.fn, c.in, err, c.code)
		}
	}
	wantJSON(t, v.must(t, "state::get", `{"scope":"s","key":"k","include_seq":true}`), `{"key":"k","value":{"a":1},"seq":1}`)
	wantJSON(t, v.must(t, "state::list_groups", `{}`), `{"groups":["s"]}`)
	v.must(t, "state::set", `{"scope":"s","key":"k","value":2}`)
	if ev := <-fired; !strings.Contains(ev, `"new_value":2`) {
		t.Fatalf("the next event is %s: a refused call fired one", ev)
	}
}

func TestValueLimitFollowsEvents(t *testing.T) {
	t.Parallel()
	v := start(t, statemodule.Config{MaxEventBytes: 100 << 10})
	if got, want := v.m.MaxValueBytes(), (100<<10-(2*6*statemodule.DefaultMaxNameBytes+512))/2; got != want {
		t.Fatalf("MaxValueBytes %d, want %d", got, want)
	}
	_, err := statemodule.New(statemodule.Config{MaxEventBytes: 1000, OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }})
	if err == nil {
		t.Fatal("a module with no room for values started")
	}
}

// onChange registers fn, which sends every payload it gets to ch.
func onChange(t *testing.T, e *engine.Engine, fn string, ch chan<- string) {
	t.Helper()
	if err := e.RegisterFunction(fn, "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		ch <- string(c.Payload)
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
}

func register(t *testing.T, e *engine.Engine, tr engine.Trigger) {
	t.Helper()
	if err := moduletest.Session(t, e).RegisterTrigger(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
}

func TestTriggers(t *testing.T) {
	t.Parallel()
	v := start(t, statemodule.Config{})
	all, scoped, keyed, cond := make(chan string, 16), make(chan string, 16), make(chan string, 16), make(chan string, 16)
	onChange(t, v.e, "test::all", all)
	onChange(t, v.e, "test::scoped", scoped)
	onChange(t, v.e, "test::keyed", keyed)
	onChange(t, v.e, "test::cond", cond)
	v.e.RegisterFunction("test::only_b", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var ev triggerapi.StateEvent
		json.Unmarshal(c.Payload, &ev)
		switch ev.Key {
		case "b":
			return []byte("true"), nil
		case "boom":
			return nil, errors.New("condition failed")
		}
		return []byte("false"), nil
	}))
	register(t, v.e, engine.Trigger{ID: "all", Type: "state", FunctionID: "test::all", Config: json.RawMessage(`{}`)})
	register(t, v.e, engine.Trigger{ID: "scoped", Type: "state", FunctionID: "test::scoped", Config: json.RawMessage(`{"scope":"s"}`)})
	register(t, v.e, engine.Trigger{ID: "keyed", Type: "state", FunctionID: "test::keyed", Config: json.RawMessage(`{"scope":"s","key":"a"}`)})
	register(t, v.e, engine.Trigger{ID: "cond", Type: "state", FunctionID: "test::cond", Config: json.RawMessage(`{"condition_function_id":"test::only_b"}`)})
	s := moduletest.Session(t, v.e)
	for _, bad := range []string{`"x"`, `{"scope":1}`, `{"condition_function_id":""}x`, `[1]`} {
		err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: "bad", Type: "state", FunctionID: "test::all", Config: json.RawMessage(bad)})
		wantCode(t, err, codes.InvalidArgument)
	}

	v.must(t, "state::set", `{"scope":"s","key":"a","value":1}`)
	v.must(t, "state::update", `{"scope":"s","key":"a","ops":[{"type":"increment","path":"","by":1}]}`)
	v.must(t, "state::delete", `{"scope":"s","key":"a"}`)
	v.must(t, "state::delete", `{"scope":"s","key":"a"}`) // nothing removed, nothing fires
	v.must(t, "state::set", `{"scope":"t","key":"b","value":true}`)
	v.must(t, "state::set", `{"scope":"t","key":"boom","value":true}`)
	v.must(t, "state::set", `{"scope":"s","key":"z","value":null}`)

	want := []string{
		`{"type":"state","event_type":"state:created","scope":"s","key":"a","old_value":null,"new_value":1,"seq":1}`,
		`{"type":"state","event_type":"state:updated","scope":"s","key":"a","old_value":1,"new_value":2,"seq":2}`,
		`{"type":"state","event_type":"state:deleted","scope":"s","key":"a","old_value":2,"new_value":null,"seq":3}`,
	}
	tb := `{"type":"state","event_type":"state:created","scope":"t","key":"b","old_value":null,"new_value":true,"seq":1}`
	tboom := `{"type":"state","event_type":"state:created","scope":"t","key":"boom","old_value":null,"new_value":true,"seq":2}`
	sz := `{"type":"state","event_type":"state:created","scope":"s","key":"z","old_value":null,"new_value":null,"seq":4}`
	expect := func(name string, ch chan string, want ...string) {
		t.Helper()
		for _, w := range want {
			select {
			case got := <-ch:
				wantJSON(t, got, w)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no event, want %s", name, w)
			}
		}
		select {
		case got := <-ch:
			t.Fatalf("%s: unexpected event %s", name, got)
		case <-time.After(50 * time.Millisecond):
		}
	}
	expect("all", all, append(want, tb, tboom, sz)...)
	expect("scoped", scoped, append(want, sz)...)
	expect("keyed", keyed, want...)
	expect("cond", cond, tb)
}

// TestSlowTriggerIsBounded: a trigger whose function never returns holds
// at most its queue's bytes and drops the rest; writes and other triggers
// go on, and the drops cost a log line per interval, not one each.
func TestSlowTriggerIsBounded(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	v := start(t, statemodule.Config{TriggerQueue: 1 << 20, TriggerQueueBytes: 64 << 10, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	release := make(chan struct{})
	defer close(release)
	v.e.RegisterFunction("test::stuck", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	fast := make(chan string, 100)
	onChange(t, v.e, "test::fast", fast)
	register(t, v.e, engine.Trigger{ID: "stuck", Type: "state", FunctionID: "test::stuck"})
	register(t, v.e, engine.Trigger{ID: "fast", Type: "state", FunctionID: "test::fast"})
	val := `"` + strings.Repeat("v", 200) + `"`
	for b := range 20 { // 2000 events of about 300 bytes: 600 KB
		for i := range 100 {
			v.must(t, "state::set", fmt.Sprintf(`{"scope":"s","key":"k%d","value":%s}`, b*100+i, val))
		}
		for i := range 100 {
			select {
			case <-fast:
			case <-time.After(10 * time.Second):
				t.Fatalf("batch %d: fast trigger got %d of 100 events", b, i)
			}
		}
	}
	out := logs.String()
	// About 1,500 events are dropped; the log says so once per trigger
	// owner per interval (engine.FireLog), not once per event.
	drops := strings.Count(out, "state trigger queue full")
	if drops < 1 || drops > 2 || strings.Count(out, "trigger_id=stuck") != drops {
		t.Fatalf("%d drop lines logged, want one per interval, of the stuck trigger:\n%.2000s", drops, out)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFileStoreSurvivesRestart: values, sequences and scopes come back
// after the module is closed and opened on the same directory.
func TestFileStoreSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func(o store.Options) (store.Store, error) { return store.OpenFile(dir, store.FileOptions{Options: o}) }
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := statemodule.New(statemodule.Config{OpenStore: open})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := e.Trigger(context.Background(), engine.Call{FunctionID: "state::set", Payload: fmt.Appendf(nil, `{"scope":"s","key":"k","value":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	v := start(t, statemodule.Config{OpenStore: open})
	wantJSON(t, v.must(t, "state::get", `{"scope":"s","key":"k","include_seq":true}`), `{"key":"k","value":4,"seq":5}`)
	wantJSON(t, v.must(t, "state::set", `{"scope":"s","key":"k","value":5}`), `{"old_value":4,"new_value":5,"seq":6}`)
}

// TestFleetOnJetStream: two engines share one JetStream state; a write
// through either fires the triggers registered on both, once each, and
// concurrent updates through both lose nothing.
func TestFleetOnJetStream(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	engines := make([]*env, 2)
	events := make([]chan string, 2)
	for i := range engines {
		nc := natstest.Connect(t, ns)
		bus := statebus.New(nc)
		v := start(t, statemodule.Config{
			OpenStore: func(o store.Options) (store.Store, error) {
				return jsstore.Open(context.Background(), nc, jsstore.Config{Stream: "TRINE_STATE", Prefix: "trine.statekv"}, o)
			},
			Publish:       bus.Publish,
			MaxEventBytes: bus.MaxPayload(),
		})
		if err := bus.Receive(v.m.Deliver); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(bus.Close)
		engines[i] = v
		events[i] = make(chan string, 1000)
		onChange(t, v.e, "test::on", events[i])
		register(t, v.e, engine.Trigger{ID: "t", Type: "state", FunctionID: "test::on", Config: json.RawMessage(`{"scope":"counters"}`)})
	}
	var wg sync.WaitGroup
	const n = 50
	for i := range engines {
		wg.Go(func() {
			for range n {
				if _, err := engines[i].call("state::update", `{"scope":"counters","key":"c","ops":[{"type":"increment","path":"","by":1}]}`); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	wantJSON(t, engines[1].must(t, "state::get", `{"scope":"counters","key":"c","include_seq":true}`), fmt.Sprintf(`{"key":"c","value":%d,"seq":%d}`, 2*n, 2*n))
	for i, ch := range events {
		seen := map[uint64]bool{}
		for range 2 * n {
			select {
			case got := <-ch:
				var ev triggerapi.StateEvent
				if err := json.Unmarshal([]byte(got), &ev); err != nil {
					t.Fatal(err)
				}
				if seen[ev.Seq] {
					t.Fatalf("engine %d: seq %d fired twice", i, ev.Seq)
				}
				seen[ev.Seq] = true
			case <-time.After(10 * time.Second):
				t.Fatalf("engine %d: %d of %d events", i, len(seen), 2*n)
			}
		}
	}
	// Events that do not decode are dropped, not fatal.
	nc := natstest.Connect(t, ns)
	for _, bad := range []string{``, `x`, `{"scope":1}`, `{"scope":"counters"}`} {
		if err := nc.Publish(statebus.Subject, []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	engines[0].must(t, "state::set", `{"scope":"counters","key":"d","value":1}`)
	for i, ch := range events {
		select {
		case got := <-ch:
			if !strings.Contains(got, `"key":"d"`) {
				t.Fatalf("engine %d: got %s", i, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("engine %d: no event after the bad ones", i)
		}
	}
}

// TestHTMLCharactersDoNotGrowEvents: a value of <, > and & up to the
// limit comes back as written, in the answer and in the event that
// triggers get: JSON's HTML escaping (\u003c, six bytes for one) would
// push the event past its bound, and the trigger would miss the write.
func TestHTMLCharactersDoNotGrowEvents(t *testing.T) {
	t.Parallel()
	v := start(t, statemodule.Config{MaxEventBytes: 100 << 10})
	fired := make(chan string, 4)
	onChange(t, v.e, "test::on", fired)
	register(t, v.e, engine.Trigger{ID: "all", Type: "state", FunctionID: "test::on"})
	value := `"` + strings.Repeat("<&>", (v.m.MaxValueBytes()-2)/3) + `"`
	out := v.must(t, "state::set", `{"scope":"s","key":"k","value":`+value+`}`)
	if len(out) > 2*len(value) || strings.Contains(out, `\u003c`) {
		t.Fatalf("the answer to a %d-byte value is %d bytes (escaped: %v)", len(value), len(out), strings.Contains(out, `\u003c`))
	}
	select {
	case ev := <-fired:
		if !strings.Contains(ev, "<&>") {
			t.Fatalf("event %.80s…", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the trigger missed an acknowledged write")
	}
}
