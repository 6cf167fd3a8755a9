package streammodule_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// openSchema accepts any object with a title; strictSchema wants it a
// number, which NONE lets through the mode check.
const (
	openSchema   = `{"type":"object","properties":{"title":{}},"required":["title"]}`
	strictSchema = `{"type":"object","properties":{"title":{"type":"number"}},"required":["title"]}`
)

func defineV(t *testing.T, v *env, version int, schema, extra string) (string, error) {
	t.Helper()
	return v.call(t, "stream::define", `{"stream_name":"todos","version":`+itoa(version)+`,"compatibility":"NONE","item_schema":`+schema+extra+`}`)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// seed stores items a..c (titles "x", 2, "y") under version 1.
func seed(t *testing.T, v *env) {
	t.Helper()
	if _, err := defineV(t, v, 1, openSchema, ""); err != nil {
		t.Fatal(err)
	}
	for _, it := range []string{`"a","data":{"title":"x"}`, `"b","data":{"title":2}`, `"c","data":{"title":"y"}`} {
		v.must(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":`+it+`}`)
	}
}

func schemaVersion(t *testing.T, v *env) uint64 {
	t.Helper()
	var s struct {
		Current struct{ Version uint64 } `json:"current"`
	}
	if err := json.Unmarshal([]byte(v.must(t, "engine::streams::schema", `{"stream_name":"todos"}`)), &s); err != nil {
		t.Fatal(err)
	}
	return s.Current.Version
}

// A new version that stored items break is refused with the ids of the
// first that fail and the rule; the history of events counts too.
func TestEvolveRefusesStoredItems(t *testing.T) {
	v := start(t, streammodule.Config{})
	seed(t, v)
	_, err := defineV(t, v, 2, strictSchema, "")
	wantRefused(t, err, codes.Conflict, `2 stored items fail version 2: {"group_id":"g","item_id":"a","stream_name":"todos"}, {"group_id":"g","item_id":"c","stream_name":"todos"}; first: /title: expected number, got string`)
	wantRefused(t, err, codes.Conflict, "checked 3 items")
	wantRefused(t, err, codes.Conflict, "nothing was stored")
	if got := schemaVersion(t, v); got != 1 {
		t.Fatalf("version after refusal: %d", got)
	}
	// A compatible version passes and says what it checked.
	out, err := defineV(t, v, 2, `{"type":"object"}`, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"checked":{"checked":3,`) || !strings.Contains(out, `"history":{"checked":3,"failed":0}`) {
		t.Fatalf("answer: %s", out)
	}
}

// Items fixed since the history recorded them still break it: a client
// resuming with since would replay the old events.
func TestEvolveRefusesHistory(t *testing.T) {
	v := start(t, streammodule.Config{})
	seed(t, v)
	v.must(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"a","data":{"title":1}}`)
	v.must(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"c","data":{"title":3}}`)
	_, err := defineV(t, v, 2, strictSchema, "")
	wantRefused(t, err, codes.Conflict, `2 events in the history clients resume from fail version 2: group "g" seq 1: /title: expected number, got string; group "g" seq 3: /title`)
	if got := schemaVersion(t, v); got != 1 {
		t.Fatalf("version after refusal: %d", got)
	}
}

// migrate converts the failing items through a function, the new version
// is stored, and the failing history is reset so that resuming clients
// get a snapshot.
func TestEvolveMigrates(t *testing.T) {
	v := start(t, streammodule.Config{})
	seed(t, v)
	var calls atomic.Int32
	if err := v.e.RegisterFunction("todos::migrate", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		calls.Add(1)
		var in struct {
			Item string              `json:"item_id"`
			Data struct{ Title any } `json:"data"`
		}
		if err := json.Unmarshal(c.Payload, &in); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]any{"title": len(in.Data.Title.(string))})
	})); err != nil {
		t.Fatal(err)
	}
	out, err := defineV(t, v, 2, strictSchema, `,"migrate":"todos::migrate"`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"failed":2,"migrated":2`) || !strings.Contains(out, `"reset_groups":["g"]`) || calls.Load() != 2 {
		t.Fatalf("answer %s after %d calls", out, calls.Load())
	}
	if got := v.must(t, "stream::get", `{"stream_name":"todos","group_id":"g","item_id":"a"}`); got != `{"title":1}` {
		t.Fatalf("migrated a: %s", got)
	}
	if got := schemaVersion(t, v); got != 2 {
		t.Fatalf("version: %d", got)
	}
	// The history was reset: resuming from before the migration resyncs.
	if _, _, ok, err := v.m.Since(t.Context(), "todos", "g", 1); err != nil || ok {
		t.Fatalf("since 1 after reset: ok %v, %v", ok, err)
	}
}

// A migrate function the definer may not call is refused, and nothing
// changes; a migrate result that fails the new version refuses it too.
func TestEvolveMigrateForbiddenOrFailing(t *testing.T) {
	v := start(t, streammodule.Config{})
	seed(t, v)
	bad := engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) { return []byte(`{"title":"still a string"}`), nil })
	if err := v.e.RegisterFunction("todos::migrate", "", bad); err != nil {
		t.Fatal(err)
	}
	g, err := v.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "stream::*"}, {Match: "engine::*"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	in := `{"stream_name":"todos","version":2,"compatibility":"NONE","item_schema":` + strictSchema + `,"migrate":"todos::migrate"}`
	_, err = v.e.Trigger(t.Context(), engine.Call{FunctionID: "stream::define", Payload: []byte(in), Grant: g})
	wantRefused(t, err, codes.Forbidden, `migrate "todos::migrate": function "todos::migrate" is not exposed`)
	_, err = defineV(t, v, 2, strictSchema, `,"migrate":"todos::migrate"`)
	wantRefused(t, err, codes.Conflict, `migrate "todos::migrate" left items failing version 2: {"group_id":"g","item_id":"a"`)
	if got := schemaVersion(t, v); got != 1 {
		t.Fatalf("version after refusals: %d", got)
	}
	if got := v.must(t, "stream::get", `{"stream_name":"todos","group_id":"g","item_id":"a"}`); got != `{"title":"x"}` {
		t.Fatalf("a after refusals: %s", got)
	}
}

// A write between the re-check's read of an item and the migrated write
// is kept: the migrated write is conditional on the sequence read, and
// the item is read again; while the check runs, writes must satisfy the
// new version too.
func TestEvolveConcurrentWriteKept(t *testing.T) {
	v := start(t, streammodule.Config{})
	seed(t, v)
	var once atomic.Bool
	var during error
	if err := v.e.RegisterFunction("todos::migrate", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
		if once.CompareAndSwap(false, true) {
			// A write meanwhile must satisfy the new version as well.
			_, during = v.call(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"a","data":{"title":"late"}}`)
			v.must(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"a","data":{"title":42}}`)
		}
		return []byte(`{"title":0}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	out, err := defineV(t, v, 2, strictSchema, `,"migrate":"todos::migrate"`)
	if err != nil {
		t.Fatal(err)
	}
	wantRefused(t, during, codes.InvalidArgument, "/title: expected number, got string")
	if !strings.Contains(out, `"retried":1`) {
		t.Fatalf("answer: %s", out)
	}
	if got := v.must(t, "stream::get", `{"stream_name":"todos","group_id":"g","item_id":"a"}`); got != `{"title":42}` {
		t.Fatalf("the concurrent write was lost: %s", got)
	}
}

// A re-check that outlasts --contract-define-timeout is refused and
// stores nothing.
func TestEvolveDeadlineFailsClosed(t *testing.T) {
	st := store.NewMemory(store.Options{})
	set := contracts.NewSet(st, contracts.Streams, contract.NewCompiler(contract.Limits{DefineTimeout: 50e6}))
	v := start(t, streammodule.Config{Contracts: set})
	seed(t, v)
	if err := v.e.RegisterFunction("todos::migrate", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}
	_, err := defineV(t, v, 2, strictSchema, `,"migrate":"todos::migrate"`)
	wantRefused(t, err, codes.DeadlineExceeded, "took over 50ms (--contract-define-timeout) (checked 1 items")
	if got := schemaVersion(t, v); got != 1 {
		t.Fatalf("version after refusal: %d", got)
	}
	if got := v.must(t, "stream::get", `{"stream_name":"todos","group_id":"g","item_id":"a"}`); got != `{"title":"x"}` {
		t.Fatalf("a after refusal: %s", got)
	}
}

// Sent events still in the history are checked against the new version's
// event schemas.
func TestEvolveRefusesSentEvents(t *testing.T) {
	v := start(t, streammodule.Config{})
	ev := func(typ string) string {
		return `{"stream_name":"chat","compatibility":"NONE","item_schema":{},"event_schemas":{"typing":{"type":"object","properties":{"user":{"type":"` + typ + `"}}}}}`
	}
	v.must(t, "stream::define", `{"version":1,`+ev("string")[1:])
	v.must(t, "stream::send", `{"stream_name":"chat","group_id":"room","type":"typing","data":{"user":"ann"}}`)
	_, err := v.call(t, "stream::define", `{"version":2,`+ev("integer")[1:])
	wantRefused(t, err, codes.Conflict, `1 events in the history clients resume from fail version 2: group "room" seq 1: /user: expected integer, got string`)
}

// A stream holding more items than a definition re-checks is refused new
// versions, and keeps its contract.
func TestEvolveItemBound(t *testing.T) {
	st := store.NewMemory(store.Options{})
	set := contracts.NewSet(st, contracts.Streams, contract.NewCompiler(contract.Limits{DefineMaxItems: 2}))
	v := start(t, streammodule.Config{Contracts: set})
	seed(t, v)
	_, err := defineV(t, v, 2, `{"type":"object"}`, "")
	wantRefused(t, err, codes.Conflict, `"todos" holds over 2 items or 268435456 bytes, more than a definition re-checks (--contract-define-max-items, --contract-define-max-bytes) (checked 3 items`)
	if got := schemaVersion(t, v); got != 1 {
		t.Fatalf("version after refusal: %d", got)
	}
}

// A write checked against the old version alone, and held between its
// check and its commit, cannot slip past the re-check: the re-check
// waits for it to commit before reading what is stored, then refuses the
// new version that its item breaks. On every store.
func TestEvolveWaitsForWritesCheckedBefore(t *testing.T) {
	for _, kind := range []string{"memory", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			cfg := streammodule.Config{Contracts: contracts.NewMemorySet(contracts.Streams)}
			if kind == "jetstream" {
				nc := natstest.Connect(t, natstest.Start(t))
				cfg.OpenStore = func(o store.Options) (store.Store, error) {
					return jsstore.Open(context.Background(), nc, jsstore.Config{}, o)
				}
			}
			v := start(t, cfg)
			seed(t, v)
			checked, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			streammodule.BeforeCommit(v.m, func(k store.Key) {
				if k.Item == "late" {
					once.Do(func() { close(checked); <-release })
				}
			})
			wrote := make(chan error, 1)
			go func() {
				_, err := v.call(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"late","data":{"title":"a string"}}`)
				wrote <- err
			}()
			<-checked // checked against version 1 alone, not committed
			defined := make(chan error, 1)
			go func() {
				_, err := defineV(t, v, 2, `{"properties":{"title":{"not":{"const":"a string"}}}}`, "")
				defined <- err
			}()
			// Let the write commit once the definition waits for it, or
			// once the definition is over (which would be the gap).
			var err error
			timeout := time.NewTimer(20 * time.Second)
			defer timeout.Stop()
			select {
			case err = <-defined:
				close(release)
			case <-waitFor(t.Context(), func() bool { return cfg.Contracts.Draining() > 0 }):
				close(release)
				err = <-defined
			case <-timeout.C:
				close(release)
				t.Fatal("the definition neither ended nor waited for the write within 20s")
			}
			if werr := <-wrote; werr != nil {
				t.Fatalf("the write checked before the definition: %v", werr)
			}
			if err == nil {
				t.Fatalf("version 2 stored over an item that breaks it: %s", v.must(t, "stream::get", `{"stream_name":"todos","group_id":"g","item_id":"late"}`))
			}
			wantRefused(t, err, codes.Conflict, `"item_id":"late"`)
			if got := schemaVersion(t, v); got != 1 {
				t.Fatalf("version after refusal: %d", got)
			}
		})
	}
}

// waitFor closes its channel once cond holds, polling until ctx ends.
func waitFor(ctx context.Context, cond func() bool) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for !cond() {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
		close(ch)
	}()
	return ch
}
