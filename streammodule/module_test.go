package streammodule_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/streamtest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/streamapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	e   *engine.Engine
	m   *streammodule.Module
	sub *natsfanout.Subscriber
}

func start(t *testing.T, cfg streammodule.Config) *env {
	t.Helper()
	st := streamtest.Start(t, cfg)
	return &env{e: st.Engine, m: st.Module, sub: st.Events}
}

func (v *env) call(t *testing.T, fn, payload string) (string, error) {
	t.Helper()
	out, err := v.e.Trigger(context.Background(), engine.Call{FunctionID: fn, Payload: []byte(payload)})
	return string(out), err
}

func (v *env) must(t *testing.T, fn, payload string) string {
	t.Helper()
	out, err := v.call(t, fn, payload)
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

func TestFunctionShapes(t *testing.T) {
	v := start(t, streammodule.Config{})
	k := `"stream_name":"todos","group_id":"inbox"`
	steps := []struct{ fn, in, want string }{
		{"stream::get", `{` + k + `,"item_id":"a"}`, `null`},
		{"stream::set", `{` + k + `,"item_id":"a","data":{"t":"x"}}`, `{"old_value":null,"new_value":{"t":"x"},"seq":1}`},
		{"stream::set", `{` + k + `,"item_id":"a","data":{"t":"y"}}`, `{"old_value":{"t":"x"},"new_value":{"t":"y"},"seq":2}`},
		{"stream::set", `{` + k + `,"item_id":"b","data":null}`, `{"old_value":null,"new_value":null,"seq":3}`},
		{"stream::get", `{` + k + `,"item_id":"a"}`, `{"t":"y"}`},
		{"stream::get", `{` + k + `,"item_id":"a","include_seq":true}`, `{"id":"a","data":{"t":"y"},"seq":2}`},
		{"stream::list", `{` + k + `}`, `[{"t":"y"},null]`},
		{"stream::list", `{` + k + `,"limit":1}`, `{"items":[{"id":"a","data":{"t":"y"},"seq":2}],"seq":3,"more":true}`},
		{"stream::list", `{` + k + `,"after":"a","include_ids":true}`, `{"items":[{"id":"b","data":null,"seq":3}],"seq":3,"more":false}`},
		{"stream::list_groups", `{"stream_name":"todos"}`, `["inbox"]`},
		{"stream::list_all", `{}`, `{"stream":[{"id":"todos","groups":["inbox"]}],"count":1}`},
		{"stream::send", `{` + k + `,"type":"typing","data":{"who":"ann"}}`, `{"seq":4}`},
		{"stream::update", `{` + k + `,"item_id":"a","ops":[{"type":"set","path":"n","value":1},{"type":"increment","path":"n","by":2}]}`, `{"old_value":{"t":"y"},"new_value":{"n":3,"t":"y"},"seq":5}`},
		{"stream::delete", `{` + k + `,"item_id":"a"}`, `{"old_value":{"n":3,"t":"y"},"seq":6}`},
		{"stream::delete", `{` + k + `,"item_id":"a"}`, `{"old_value":null}`},
		{"stream::update", `{` + k + `,"item_id":"new","ops":[]}`, `{"old_value":null,"new_value":{},"seq":7}`},
		{"stream::set", `{` + k + `,"item_id":"pretty","data":{ "a" : [ 1, 2 ],` + "\n" + ` "b": "x y" }}`, `{"old_value":null,"new_value":{"a":[1,2],"b":"x y"},"seq":8}`},
		{"stream::get", `{` + k + `,"item_id":"pretty"}`, `{"a":[1,2],"b":"x y"}`},
	}
	for _, s := range steps {
		if got := v.must(t, s.fn, s.in); got != s.want {
			t.Fatalf("%s %s\n got %s\nwant %s", s.fn, s.in, got, s.want)
		}
	}
}

func TestIfSeqAndAllOrNothing(t *testing.T) {
	v := start(t, streammodule.Config{})
	k := `"stream_name":"s","group_id":"g","item_id":"i"`
	v.must(t, "stream::set", `{`+k+`,"data":{"n":1}}`)
	_, err := v.call(t, "stream::set", `{`+k+`,"data":2,"if_seq":7}`)
	wantCode(t, err, codes.Conflict)
	_, err = v.call(t, "stream::update", `{`+k+`,"if_seq":0,"ops":[]}`)
	wantCode(t, err, codes.Conflict)
	_, err = v.call(t, "stream::delete", `{`+k+`,"if_seq":3}`)
	wantCode(t, err, codes.Conflict)
	_, err = v.call(t, "stream::update", `{`+k+`,"ops":[{"type":"set","path":"a","value":1},{"type":"increment","path":"a","by":1},{"type":"append","path":"a","value":1}]}`)
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "ops[2]") || !strings.Contains(err.Error(), "append.type_mismatch") {
		t.Fatalf("the error does not name the failing op: %v", err)
	}
	if got := v.must(t, "stream::get", `{`+k+`,"include_seq":true}`); got != `{"id":"i","data":{"n":1},"seq":1}` {
		t.Fatalf("a refused write changed the item: %s", got)
	}
	if got := v.must(t, "stream::set", `{`+k+`,"data":3,"if_seq":1}`); got != `{"old_value":{"n":1},"new_value":3,"seq":2}` {
		t.Fatalf("matching if_seq: %s", got)
	}
}

func TestBadInput(t *testing.T) {
	v := start(t, streammodule.Config{MaxNameBytes: 8})
	for _, c := range []struct{ fn, in string }{
		{"stream::set", `{"stream_name":"s","group_id":"g","item_id":"i"}`},
		{"stream::set", `{"stream_name":"s","group_id":"g","data":1}`},
		{"stream::set", `{"stream_name":"","group_id":"g","item_id":"i","data":1}`},
		{"stream::set", `{"stream_name":"123456789","group_id":"g","item_id":"i","data":1}`},
		{"stream::set", `{"stream_name":1,"group_id":"g","item_id":"i","data":1}`},
		{"stream::set", `[1]`},
		{"stream::set", `{"stream_name":"s","group_id":"g","item_id":"i","data":1,"if_seq":-1}`},
		{"stream::get", `{"stream_name":"s"}`},
		{"stream::list", `{"stream_name":"s","group_id":"g","limit":-1}`},
		{"stream::list_groups", `{}`},
		{"stream::send", `{"stream_name":"s","group_id":"g","data":1}`},
		{"stream::update", `{"stream_name":"s","group_id":"g","item_id":"i"}`},
		{"stream::update", `{"stream_name":"s","group_id":"g","item_id":"i","ops":[{"type":"nope"}]}`},
		{"stream::update", `{"stream_name":"s","group_id":"g","item_id":"i","ops":[{"type":"increment","path":"n","by":1.5}]}`},
	} {
		_, err := v.call(t, c.fn, c.in)
		wantCode(t, err, codes.InvalidArgument)
	}
	if got := v.must(t, "stream::list_all", `{}`); got != `{"stream":[],"count":0}` {
		t.Fatalf("bad input changed something: %s", got)
	}
}

func TestHostileNamesNeverLeak(t *testing.T) {
	v := start(t, streammodule.Config{})
	names := []string{".", "*", ">", ":", "/", "a b", "🔥", "a.b", "a:b", "trine.stream.x"}
	for i, s := range names {
		for j, g := range names {
			in, _ := json.Marshal(map[string]any{"stream_name": s, "group_id": g, "item_id": g, "data": i*100 + j})
			v.must(t, "stream::set", string(in))
		}
	}
	for i, s := range names {
		in, _ := json.Marshal(map[string]any{"stream_name": s})
		gs := v.must(t, "stream::list_groups", string(in))
		want, _ := engine.MarshalJSON(sorted(names))
		if gs != string(want) {
			t.Fatalf("list_groups(%q) = %s", s, gs)
		}
		for j, g := range names {
			in, _ := json.Marshal(map[string]any{"stream_name": s, "group_id": g})
			if got := v.must(t, "stream::list", string(in)); got != fmt.Sprintf("[%d]", i*100+j) {
				t.Fatalf("list(%q, %q) = %s", s, g, got)
			}
		}
	}
}

func sorted(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// The events of one group reach NATS subscribers in sequence order, with
// nothing missing, under concurrent writers.
func TestEventsPublishedInOrder(t *testing.T) {
	v := start(t, streammodule.Config{})
	sub := v.sub
	const n = 1000
	got := make(chan []byte, n+10)
	cancel, err := sub.Subscribe("counters", "c:1", func(b []byte) { got <- append([]byte(nil), b...) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range n / 20 {
				if _, err := v.call(t, "stream::update", `{"stream_name":"counters","group_id":"c:1","item_id":"x","ops":[{"type":"increment","path":"n","by":1}]}`); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := v.must(t, "stream::get", `{"stream_name":"counters","group_id":"c:1","item_id":"x"}`); got != `{"n":1000}` {
		t.Fatalf("1000 concurrent increments gave %s", got)
	}
	for i := 1; i <= n; i++ {
		select {
		case b := <-got:
			var f struct {
				Seq   uint64 `json:"seq"`
				Event struct {
					Type string          `json:"type"`
					Data json.RawMessage `json:"data"`
				} `json:"event"`
			}
			if err := json.Unmarshal(b, &f); err != nil || f.Seq != uint64(i) || string(f.Event.Data) != `{"n":`+strconv.Itoa(i)+`}` {
				t.Fatalf("event %d: %s (%v)", i, b, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d never arrived", i)
		}
	}
}

func TestStreamTriggers(t *testing.T) {
	v := start(t, streammodule.Config{})
	var mu sync.Mutex
	var got []string
	seen := make(chan struct{}, 100)
	v.e.RegisterFunction("test::on", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var f struct {
			Seq     uint64 `json:"seq"`
			GroupID string `json:"groupId"`
			ID      string `json:"id"`
			Event   struct {
				Type string `json:"type"`
			} `json:"event"`
		}
		json.Unmarshal(c.Payload, &f)
		mu.Lock()
		got = append(got, fmt.Sprintf("%s/%s/%s/%d%s", f.GroupID, f.ID, f.Event.Type, f.Seq, c.Metadata))
		mu.Unlock()
		seen <- struct{}{}
		return nil, nil
	}))
	v.e.RegisterFunction("test::only_b", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		if strings.Contains(string(c.Payload), `"id":"b"`) {
			return []byte("true"), nil
		}
		return []byte("false"), nil
	}))
	s := attach(t, v.e)
	for _, tr := range []engine.Trigger{
		{ID: "all", Type: "stream", FunctionID: "test::on", Config: json.RawMessage(`{"stream_name":"s","group_id":"g"}`), Metadata: json.RawMessage(`{"team":"a"}`)},
		{ID: "cond", Type: "stream", FunctionID: "test::on", Config: json.RawMessage(`{"stream_name":"s","group_id":"h","condition_function_id":"test::only_b"}`)},
	} {
		if err := s.RegisterTrigger(context.Background(), tr); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{`{}`, `"x"`, `{"stream_name":""}`, `{"stream_name":1}`, ``} {
		err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: "bad", Type: "stream", FunctionID: "test::on", Config: json.RawMessage(bad)})
		wantCode(t, err, codes.InvalidArgument)
	}
	v.must(t, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"a","data":1}`)
	v.must(t, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"a","data":2}`)
	v.must(t, "stream::set", `{"stream_name":"other","group_id":"g","item_id":"a","data":1}`)
	v.must(t, "stream::set", `{"stream_name":"s","group_id":"h","item_id":"a","data":1}`)
	v.must(t, "stream::set", `{"stream_name":"s","group_id":"h","item_id":"b","data":1}`)
	v.must(t, "stream::delete", `{"stream_name":"s","group_id":"g","item_id":"a"}`)
	v.must(t, "stream::send", `{"stream_name":"s","group_id":"g","type":"ping","data":null}`)
	for range 5 {
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			t.Fatalf("triggers fired %v", got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slicesSort(got)
	// The trigger's metadata travels with every call it makes.
	want := []string{`g/a/create/1{"team":"a"}`, `g/a/delete/3{"team":"a"}`, `g/a/update/2{"team":"a"}`, `g//event/4{"team":"a"}`, "h/b/create/2"}
	slicesSort(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("triggers fired %v, want %v", got, want)
	}
}

// A stream trigger registered again under its id follows its new
// stream_name, and one unregistered stops: a change reaches only the
// triggers of its stream, the latest of each id.
func TestStreamTriggerFollowsItsLatestRegistration(t *testing.T) {
	v := start(t, streammodule.Config{})
	fired := make(chan string, 100)
	v.e.RegisterFunction("test::on", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var f struct {
			ID string `json:"id"`
		}
		json.Unmarshal(c.Payload, &f)
		fired <- string(c.Metadata) + ":" + f.ID
		return nil, nil
	}))
	s := attach(t, v.e)
	bind := func(id, stream string) {
		t.Helper()
		tr := engine.Trigger{ID: id, Type: streammodule.TriggerStream, FunctionID: "test::on",
			Config: json.RawMessage(`{"stream_name":"` + stream + `"}`), Metadata: json.RawMessage(`"` + id + `@` + stream + `"`)}
		if err := s.RegisterTrigger(context.Background(), tr); err != nil {
			t.Fatal(err)
		}
	}
	next := func() string {
		t.Helper()
		select {
		case f := <-fired:
			return f
		case <-time.After(5 * time.Second):
			t.Fatal("no trigger fired")
			return ""
		}
	}
	bind("t", "a")
	v.must(t, "stream::set", `{"stream_name":"a","group_id":"g","item_id":"first","data":1}`)
	if got := next(); got != `"t@a":first` {
		t.Fatalf("fired %s, want t@a:first", got)
	}
	bind("t", "b") // moves t to stream b
	v.must(t, "stream::set", `{"stream_name":"a","group_id":"g","item_id":"on-a","data":1}`)
	v.must(t, "stream::set", `{"stream_name":"b","group_id":"g","item_id":"on-b","data":1}`)
	if got := next(); got != `"t@b":on-b` {
		t.Fatalf("fired %s, want t@b:on-b (t left stream a)", got)
	}
	if err := s.UnregisterTrigger(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	bind("probe", "b")
	v.must(t, "stream::set", `{"stream_name":"b","group_id":"g","item_id":"after","data":1}`)
	if got := next(); got != `"probe@b":after` {
		t.Fatalf("fired %s, want probe@b:after (t is unregistered)", got)
	}
	select {
	case f := <-fired:
		t.Fatalf("fired %s as well", f)
	default:
	}
}

func slicesSort(s []string) { copy(s, sorted(s)) }

// attach connects a worker session with no transport behind it.
func attach(t *testing.T, e *engine.Engine) *engine.Session {
	t.Helper()
	return moduletest.Session(t, e)
}

func TestCustomStream(t *testing.T) {
	v := start(t, streammodule.Config{})
	items := map[string]json.RawMessage{}
	var mu sync.Mutex
	serve := func(op string, h func(in map[string]json.RawMessage) (any, error)) {
		if err := v.e.RegisterFunction(streammodule.CustomFunctionID(op, "ext"), "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
			var in map[string]json.RawMessage
			json.Unmarshal(c.Payload, &in)
			mu.Lock()
			defer mu.Unlock()
			out, err := h(in)
			if err != nil {
				return nil, err
			}
			return json.Marshal(out)
		})); err != nil {
			t.Fatal(err)
		}
	}
	key := func(in map[string]json.RawMessage) string {
		return string(in["group_id"]) + "/" + string(in["item_id"])
	}
	serve("get", func(in map[string]json.RawMessage) (any, error) { return items[key(in)], nil })
	serve("set", func(in map[string]json.RawMessage) (any, error) {
		old := items[key(in)]
		items[key(in)] = in["data"]
		return map[string]any{"old_value": old, "new_value": in["data"]}, nil
	})
	k := `"stream_name":"ext","group_id":"g","item_id":"i"`
	if got := v.must(t, "stream::set", `{`+k+`,"data":{"n":1}}`); got != `{"old_value":null,"new_value":{"n":1},"seq":1}` {
		t.Fatalf("custom set: %s", got)
	}
	if got := v.must(t, "stream::update", `{`+k+`,"ops":[{"type":"increment","path":"n","by":2}]}`); got != `{"old_value":{"n":1},"new_value":{"n":3},"seq":2}` {
		t.Fatalf("custom update through get+set: %s", got)
	}
	if got := v.must(t, "stream::get", `{`+k+`}`); got != `{"n":3}` {
		t.Fatalf("custom get: %s", got)
	}
	_, err := v.call(t, "stream::set", `{`+k+`,"data":1,"if_seq":2}`)
	wantCode(t, err, codes.InvalidArgument)
	// No custom delete: once a stream is custom, it never falls back to
	// the built-in store.
	_, err = v.call(t, "stream::delete", `{`+k+`}`)
	wantCode(t, err, codes.Unavailable)
	if got := v.must(t, "stream::list_all", `{}`); got != `{"stream":[],"count":0}` {
		t.Fatalf("the built-in store was written: %s", got)
	}
}

// Join fails closed when its gate cannot decide: a join trigger whose
// worker is gone keeps denying (unless it was made optional), and a
// condition that errors or is missing denies instead of skipping the
// handler.
func TestJoinFailsClosed(t *testing.T) {
	v := start(t, streammodule.Config{})
	deny := engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) { return []byte(`{"unauthorized":true}`), nil })
	allow := engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) { return []byte(`{}`), nil })
	if err := v.e.RegisterFunction("gate::deny", "", deny); err != nil {
		t.Fatal(err)
	}
	if err := v.e.RegisterFunction("gate::allow", "", allow); err != nil {
		t.Fatal(err)
	}
	if err := v.e.RegisterFunction("gate::broken", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("boom")
	})); err != nil {
		t.Fatal(err)
	}
	if err := v.e.RegisterFunction("gate::no", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return []byte(`false`), nil
	})); err != nil {
		t.Fatal(err)
	}
	join := func(stream string) error {
		return v.m.Join(context.Background(), streamapi.Subscription{SubscriptionID: "x", StreamName: stream, GroupID: "g"})
	}
	bind := func(s *engine.Session, id, fn, cfg string) {
		t.Helper()
		if err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: id, Type: "stream:join", FunctionID: fn, Config: json.RawMessage(cfg)}); err != nil {
			t.Fatal(err)
		}
	}
	owner := attach(t, v.e)
	bind(owner, "gate", "gate::deny", `{"stream_name":"secret"}`)
	bind(owner, "soft", "gate::deny", `{"stream_name":"soft","optional":true}`)
	if join("secret") == nil || join("soft") == nil {
		t.Fatal("denying join handlers allowed a join")
	}
	owner.Close()
	poll.CheckFor(t, 5*time.Second, poll.Holds("the engine to unbind the owner's triggers", func() bool { return join("soft") == nil }))
	if err := join("secret"); err == nil {
		t.Fatal("a join trigger whose worker left no longer guards its stream")
	}
	// The worker comes back and registers its trigger again: it decides.
	back := attach(t, v.e)
	bind(back, "gate", "gate::allow", `{"stream_name":"secret"}`)
	if err := join("secret"); err != nil {
		t.Fatalf("join after the gate came back: %v", err)
	}
	// An explicit unregister ends the gate.
	bind(back, "gate", "gate::deny", `{"stream_name":"secret"}`)
	if err := back.UnregisterTrigger(context.Background(), "gate"); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("the unregister", func() bool { return join("secret") == nil }))

	// Conditions: an error or a missing function denies; false skips.
	bind(back, "c1", "gate::allow", `{"stream_name":"c1","condition_function_id":"gate::broken"}`)
	bind(back, "c2", "gate::allow", `{"stream_name":"c2","condition_function_id":"gate::missing"}`)
	bind(back, "c3", "gate::deny", `{"stream_name":"c3","condition_function_id":"gate::no"}`)
	if join("c1") == nil || join("c2") == nil {
		t.Fatal("a join whose condition failed was allowed")
	}
	if err := join("c3"); err != nil {
		t.Fatalf("a false condition should skip the handler: %v", err)
	}
}

// A write whose event NATS could not carry is refused before anything is
// stored (it used to be acknowledged and never published), and an error
// means nothing changed.
func TestItemTooLargeChangesNothing(t *testing.T) {
	v := start(t, streammodule.Config{})
	k := `"stream_name":"big","group_id":"g","item_id":"x"`
	events := make(chan []byte, 16)
	cancel, err := v.sub.Subscribe("big", "g", func(b []byte) { events <- b })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	limit := v.m.MaxItemBytes()
	if limit <= 0 || limit >= 1<<20 {
		t.Fatalf("MaxItemBytes %d: the NATS server's max_payload is 1 MiB", limit)
	}
	str := func(n int) string { return `"` + strings.Repeat("a", n-2) + `"` }
	// The largest item accepted is published.
	out := v.must(t, "stream::set", `{`+k+`,"data":`+str(limit)+`}`)
	if !strings.Contains(out, `"seq":1`) {
		t.Fatalf("set at the limit: %.80s", out)
	}
	select {
	case e := <-events:
		if len(e) < limit {
			t.Fatalf("event of %d bytes", len(e))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the item at the limit was not published")
	}
	for _, c := range []struct{ fn, in string }{
		{"stream::set", `{` + k + `,"data":` + str(limit+1) + `}`},
		{"stream::set", `{` + k + `,"data":` + str(3<<20) + `}`},
		{"stream::update", `{"stream_name":"big","group_id":"g","item_id":"y","ops":[{"type":"set","path":"blob","value":` + str(limit) + `}]}`},
		{"stream::send", `{"stream_name":"big","group_id":"g","type":"t","data":` + str(limit+1) + `}`},
	} {
		_, err := v.call(t, c.fn, c.in)
		wantCode(t, err, codes.MessageTooLarge)
	}
	if got := v.must(t, "stream::get", `{"stream_name":"big","group_id":"g","item_id":"y"}`); got != "null" {
		t.Fatalf("a refused update stored %.60s", got)
	}
	got := v.must(t, "stream::get", `{`+k+`,"include_seq":true}`)
	if !strings.Contains(got, `"seq":1}`) {
		t.Fatalf("after refused writes the item is %.60s…%s", got, got[max(0, len(got)-20):])
	}
	select {
	case e := <-events:
		t.Fatalf("a refused write published %.80s", e)
	case <-time.After(100 * time.Millisecond):
	}
}

// A worker cannot take over a stream that holds items in the built-in
// store by registering its function names; a stream left by its custom
// worker says so, and an operator can give the name back.
func TestCustomStreamsCannotHijack(t *testing.T) {
	v := start(t, streammodule.Config{})
	v.must(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"a","data":1}`)
	w := attach(t, v.e)
	for _, op := range []string{"get", "set", "list", "list_groups", "delete", "update"} {
		err := w.RegisterFunction(streammodule.CustomFunctionID(op, "todos"), "")
		if engine.AsError(err).Code != codes.Conflict {
			t.Fatalf("registering %s over a stream with items: %v, want conflict", streammodule.CustomFunctionID(op, "todos"), err)
		}
	}
	if out := v.must(t, "stream::get", `{"stream_name":"todos","group_id":"g","item_id":"a"}`); out != "1" {
		t.Fatalf("the built-in stream after a refused takeover: %s", out)
	}
	// A new, empty stream may be custom; when its worker leaves, calls say
	// why, and stream::release gives the name back to the built-in store.
	if err := w.RegisterFunction(streammodule.CustomFunctionID("get", "mine"), ""); err != nil {
		t.Fatal(err)
	}
	_, err := v.call(t, "stream::get", `{"stream_name":"mine","group_id":"g","item_id":"a"}`)
	if engine.AsError(err).Code == codes.InvalidArgument {
		t.Fatalf("custom get: %v", err)
	}
	_, err = v.call(t, "stream::release", `{"stream_name":"mine"}`)
	wantCode(t, err, codes.Conflict) // its worker still serves it
	w.Close()
	_, err = v.call(t, "stream::get", `{"stream_name":"mine","group_id":"g","item_id":"a"}`)
	wantCode(t, err, codes.Unavailable)
	if !strings.Contains(err.Error(), "stream::release") {
		t.Fatalf("the error does not say how to recover: %v", err)
	}
	v.must(t, "stream::release", `{"stream_name":"mine"}`)
	if out := v.must(t, "stream::get", `{"stream_name":"mine","group_id":"g","item_id":"a"}`); out != "null" {
		t.Fatalf("after release: %s", out)
	}
}
