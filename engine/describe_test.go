package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// describingPeer is a fakePeer that records Described calls.
type describingPeer struct {
	*fakePeer
	mu   sync.Mutex
	seen []engine.WorkerInfo
}

func (p *describingPeer) Described(info engine.WorkerInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, info)
}

func TestWorkersRegister(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	p := &describingPeer{fakePeer: newPeer()}
	s, err := e.Attach(engine.WorkerInfo{Name: "first", Runtime: "node", Addr: "10.1.2.3:999"}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RegisterFunction("fn", ""); err != nil {
		t.Fatal(err)
	}
	call := func(payload string) ([]byte, error) {
		return s.Call(context.Background(), engine.Call{FunctionID: engine.FnWorkersRegister, Payload: []byte(payload)})
	}
	out, err := call(`{"name":"billing","namespace":"team-a","runtime":"go","version":"1.2.3","os":"linux amd64","pid":42,"description":"d","extra":true}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"worker_id":"` + s.ID() + `"}`; string(out) != want {
		t.Fatalf("result %s, want %s", out, want)
	}
	got := s.Info()
	if got.Name != "billing" || got.Namespace != "team-a" || got.Runtime != "go" || got.Version != "1.2.3" ||
		got.OS != "linux amd64" || got.PID != 42 || got.Description != "d" || got.Addr != "10.1.2.3:999" {
		t.Fatalf("info after register: %+v", got)
	}
	p.mu.Lock()
	if len(p.seen) != 1 || p.seen[0].Namespace != "team-a" {
		t.Fatalf("peer told %+v", p.seen)
	}
	p.mu.Unlock()

	// Omitted fields keep their value; a blank namespace or a bad name is
	// refused and changes nothing.
	if _, err := call(`{"version":"2"}`); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"namespace":"  "}`, `{"name":"a\u0000b"}`, `[1]`} {
		if _, err := call(bad); code(err) != codes.InvalidArgument {
			t.Fatalf("%s: %v, want invalid_argument", bad, err)
		}
	}
	if got := s.Info(); got.Name != "billing" || got.Version != "2" || got.Namespace != "team-a" {
		t.Fatalf("info: %+v", got)
	}

	out, err = e.Trigger(context.Background(), engine.Call{FunctionID: engine.FnWorkersList})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Workers []map[string]any `json:"workers"`
	}
	if err := json.Unmarshal(out, &list); err != nil || len(list.Workers) != 1 {
		t.Fatalf("workers::list %s (%v)", out, err)
	}
	w := list.Workers[0]
	for k, v := range map[string]any{"name": "billing", "runtime": "go", "status": "connected", "os": "linux amd64",
		"ip_address": "10.1.2.3", "function_count": float64(1), "namespace": "team-a", "pid": float64(42)} {
		if w[k] != v {
			t.Errorf("workers::list %s = %v, want %v", k, w[k], v)
		}
	}

	// Only a worker can describe itself.
	if _, err := e.Trigger(context.Background(), engine.Call{FunctionID: engine.FnWorkersRegister, Payload: []byte(`{}`)}); code(err) != codes.InvalidArgument {
		t.Fatalf("register without a worker: %v", err)
	}
}

func TestEvict(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	old, _ := attach(t, e, "w", "fn")
	fresh, _ := attach(t, e, "w")
	if fresh.Evict(old.ID(), "guess") || fresh.Evict("nobody", old.ReattachToken()) || old.Evict(old.ID(), old.ReattachToken()) {
		t.Fatal("evicted with a wrong token, an unknown id or its own id")
	}
	if !fresh.Evict(old.ID(), old.ReattachToken()) {
		t.Fatal("Evict with the right token = false")
	}
	select {
	case <-old.Done():
	default:
		t.Fatal("evicted session still open")
	}
	if e.HasFunction("fn") {
		t.Fatal("evicted session's function still registered")
	}
}

func TestRegisteredTriggersList(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	if err := e.RegisterTriggerType("http", "", &provider{}); err != nil {
		t.Fatal(err)
	}
	a, _ := attach(t, e, "alpha", "a::fn")
	b, _ := attach(t, e, "beta", "b::fn")
	for _, tc := range []struct {
		s *engine.Session
		t engine.Trigger
	}{
		{a, engine.Trigger{ID: "ta", Type: "http", FunctionID: "a::fn", Config: []byte(`{"api_path":"x","http_method":"GET"}`)}},
		{b, engine.Trigger{ID: "tb", Type: "http", FunctionID: "b::fn"}},
	} {
		if err := tc.s.RegisterTrigger(t.Context(), tc.t); err != nil {
			t.Fatal(err)
		}
	}
	list := func(filter string) []engine.RegisteredTrigger {
		t.Helper()
		out, err := e.Trigger(context.Background(), engine.Call{FunctionID: engine.FnRegisteredTriggersList, Payload: []byte(filter)})
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Triggers []engine.RegisteredTrigger `json:"registered_triggers"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		return res.Triggers
	}
	all := list(`{}`)
	if len(all) != 2 || all[0].ID != "ta" || all[0].WorkerName != "alpha" || all[0].TriggerType != "http" ||
		all[0].ConfigSummary != `{"api_path":"x","http_method":"GET"}` || string(all[1].Config) != "null" {
		t.Fatalf("all: %+v", all)
	}
	for filter, want := range map[string]string{
		`{"function_id":"b::fn"}`: "tb", `{"worker":"alpha"}`: "ta", `{"search":"b::"}`: "tb", `{"trigger_type":"none"}`: "",
	} {
		got := list(filter)
		if (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0].ID != want)) {
			t.Errorf("%s: %+v, want %q", filter, got, want)
		}
	}
	// functions::list names the serving worker, as iii does.
	out, err := e.Trigger(context.Background(), engine.Call{FunctionID: engine.FnFunctionsList, Payload: []byte(`{"worker":"beta"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var fl struct {
		Functions []engine.FunctionStatus `json:"functions"`
	}
	if err := json.Unmarshal(out, &fl); err != nil || len(fl.Functions) != 1 || fl.Functions[0].FunctionID != "b::fn" || fl.Functions[0].Namespace != "default" {
		t.Fatalf("functions::list {worker:beta}: %s", out)
	}
}
