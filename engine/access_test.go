package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

func TestMatchPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, id string
		want        bool
	}{
		{"api::*", "api::x", true}, {"api::*", "api::", true}, {"api::*", "xapi::x", false},
		{"api::*", "api:", false}, {"*::echo", "a::b::echo", true}, {"*::echo", "a::echo::x", false},
		{"a*b*c", "abc", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "acb", false}, {"a*b*c", "abcd", false},
		{"exact", "exact", true}, {"exact", "exactly", false}, {"*", "", true}, {"", "", true}, {"", "x", false},
		{"a**", "a", true}, {"*a*", "bab", true},
	} {
		if got := engine.MatchPattern(c.pattern, c.id); got != c.want {
			t.Errorf("MatchPattern(%q, %q) = %v", c.pattern, c.id, got)
		}
	}
}

// register registers a built-in function that answers with out (or err)
// and counts its calls.
func register(t *testing.T, e *engine.Engine, id string, h func(engine.Call) ([]byte, error)) *atomic.Int32 {
	t.Helper()
	n := new(atomic.Int32)
	if err := e.RegisterFunction(id, "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		n.Add(1)
		return h(c)
	})); err != nil {
		t.Fatal(err)
	}
	return n
}

func answer(s string) func(engine.Call) ([]byte, error) {
	return func(engine.Call) ([]byte, error) { return []byte(s), nil }
}

// Any answer of the auth function but an AuthResult object refuses the
// connection: an error, a timeout, a missing function, null, an array, a
// string, a field of the wrong type, an invalid prefix.
func TestAuthenticateFailsClosed(t *testing.T) {
	e := newEngine(t, engine.Config{})
	register(t, e, "auth::error", func(engine.Call) ([]byte, error) { return nil, errors.New("boom") })
	if err := e.RegisterFunction("auth::slow", "", engine.HandlerFunc(func(ctx context.Context, _ engine.Call) ([]byte, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			return []byte(`{}`), nil
		}
	})); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("p", 300)
	for _, bad := range []string{"null", "[]", `"yes"`, `{"allowed_functions":5}`, `{"function_registration_prefix":""}`} {
		register(t, e, "auth::"+bad, answer(bad))
	}
	register(t, e, "auth::long-prefix", answer(`{"function_registration_prefix":"`+long+`"}`))
	{
	}
	for _, fn := range []string{"auth::error", "auth::slow", "auth::missing", "auth::null", "auth::[]", `auth::"yes"`, `auth::{"allowed_functions":5}`, "auth::long-prefix"} {
		_, err := e.Authenticate(t.Context(), &engine.Access{AuthFunctionID: fn, Timeout: 100 * time.Millisecond}, engine.AuthInput{})
		if err == nil || engine.AsError(err).Code != codes.Unauthorized {
			t.Errorf("auth function %s: %v, want unauthorized", fn, err)
		}
	}
	// An empty prefix is no prefix, and {} admits with iii's defaults.
	for _, fn := range []string{`auth::{"function_registration_prefix":""}`} {
		g, err := e.Authenticate(t.Context(), &engine.Access{AuthFunctionID: fn}, engine.AuthInput{})
		if err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		if g.Prefix() != "" || string(g.Context()) != "{}" {
			t.Fatalf("%s: %v %q %s", fn, err, g.Prefix(), g.Context())
		}
	}
	var got engine.AuthInput
	register(t, e, "auth::echo", func(c engine.Call) ([]byte, error) {
		_ = json.Unmarshal(c.Payload, &got)
		return []byte(`{"context":{"user":"u1"}}`), nil
	})
	in := engine.AuthInput{Headers: map[string]string{"x-token": "t"}, QueryParams: map[string][]string{"a": {"1", "2"}}, IPAddress: "10.0.0.1"}
	g, err := e.Authenticate(t.Context(), &engine.Access{AuthFunctionID: "auth::echo"}, in)
	if err != nil || string(g.Context()) != `{"user":"u1"}` {
		t.Fatalf("admitted: %v %s", err, g.Context())
	}
	if got.Headers["x-token"] != "t" || len(got.QueryParams["a"]) != 2 || got.IPAddress != "10.0.0.1" {
		t.Fatalf("the auth function got %+v", got)
	}
}

var authIDs atomic.Int32

// granted attaches a session under the Grant that auth answers for Access a.
func granted(t *testing.T, e *engine.Engine, a *engine.Access, result string) (*engine.Session, *fakePeer) {
	t.Helper()
	if a.AuthFunctionID == "" {
		a.AuthFunctionID = "test::auth::" + strconv.Itoa(int(authIDs.Add(1)))
		register(t, e, a.AuthFunctionID, answer(result))
	}
	g, err := e.Authenticate(t.Context(), a, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer()
	s, err := e.AttachGranted(engine.WorkerInfo{Name: "granted"}, p, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, p
}

// Calls are decided in iii's order; a refused call is forbidden, names the
// rule, and runs nothing.
func TestGrantDecidesCalls(t *testing.T) {
	e := newEngine(t, engine.Config{})
	calls := map[string]*atomic.Int32{}
	for _, id := range []string{"api::echo", "api::secret", "private::x", "extra::y"} {
		calls[id] = register(t, e, id, answer(`"ok"`))
	}
	calls["engine::log::info"] = new(atomic.Int32) // built in
	s, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}},
		`{"allowed_functions":["extra::y","api::secret"],"forbidden_functions":["api::secret"]}`)
	for id, want := range map[string]string{
		"api::echo": "", "extra::y": "", "engine::log::info": "",
		"api::secret": "forbidden_functions", "private::x": "not exposed",
	} {
		_, err := s.Call(t.Context(), engine.Call{FunctionID: id, Payload: []byte(`{"message":"m"}`)})
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v, want allowed", id, err)
		case want != "" && (engine.AsError(err).Code != codes.Forbidden || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want forbidden naming %q", id, err, want)
		case want != "" && calls[id].Load() != 0:
			t.Errorf("%s ran although refused", id)
		}
	}
	if err := s.CallVoid(engine.Call{FunctionID: "private::x"}); engine.AsError(err).Code != codes.Forbidden {
		t.Errorf("void call of a private function: %v", err)
	}
}

// Registrations pass the AuthResult's switches, then the hooks, and take
// the prefix; the worker is invoked under its own, unprefixed ids.
func TestGrantDecidesRegistrations(t *testing.T) {
	e := newEngine(t, engine.Config{})
	register(t, e, "hook::fn", func(c engine.Call) ([]byte, error) {
		var in struct {
			FunctionID string          `json:"function_id"`
			Context    json.RawMessage `json:"context"`
		}
		_ = json.Unmarshal(c.Payload, &in)
		if strings.HasPrefix(in.FunctionID, "denied::") || string(in.Context) != `{"user":"u"}` {
			return nil, errors.New("denied function registration")
		}
		if in.FunctionID == "rename" {
			return []byte(`{"function_id":"renamed"}`), nil
		}
		return []byte(`{}`), nil
	})
	register(t, e, "hook::trigger", func(c engine.Call) ([]byte, error) {
		if strings.Contains(string(c.Payload), "denied-trig") {
			return nil, errors.New("denied trigger registration")
		}
		return nil, nil
	})
	register(t, e, "hook::tt", func(c engine.Call) ([]byte, error) {
		if strings.Contains(string(c.Payload), "denied-tt") {
			return nil, errors.New("denied trigger type registration")
		}
		return []byte(`{}`), nil
	})
	a := &engine.Access{OnFunctionRegistration: "hook::fn", OnTriggerRegistration: "hook::trigger", OnTriggerTypeRegistration: "hook::tt",
		ExposeFunctions: []engine.Filter{{Match: "*"}}}
	s, p := granted(t, e, a, `{"function_registration_prefix":"tenant","allow_trigger_type_registration":true,"allowed_trigger_types":["tt-ok","denied-tt"],"context":{"user":"u"}}`)

	if err := s.RegisterFunction("echo", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterFunction("rename", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterFunction("denied::fn", ""); engine.AsError(err).Code != codes.Forbidden || !strings.Contains(err.Error(), "denied function registration") {
		t.Fatalf("hook-denied registration: %v", err)
	}
	ids := map[string]bool{}
	for _, f := range e.Functions() {
		ids[f.FunctionID] = true
	}
	if !ids["tenant::echo"] || !ids["tenant::renamed"] || ids["echo"] || ids["tenant::denied::fn"] || ids["denied::fn"] {
		t.Fatalf("registered %v", ids)
	}
	// A call of the prefixed id reaches the worker under its own id.
	go func() {
		_, _ = e.Trigger(context.Background(), engine.Call{FunctionID: "tenant::echo", Timeout: time.Second})
	}()
	select {
	case inv := <-p.invokes:
		if inv.FunctionID != "echo" {
			t.Fatalf("the worker was invoked as %q", inv.FunctionID)
		}
		s.Result(inv.InvocationID, []byte("1"), nil)
	case <-time.After(5 * time.Second):
		t.Fatal("no invocation")
	}
	if err := s.UnregisterFunction("echo"); err != nil {
		t.Fatalf("unregister by the worker's own id: %v", err)
	}

	// Trigger types: the hook decides; triggers: allowed types, the hook,
	// and the prefix on function_id.
	if err := s.RegisterTriggerType("denied-tt", ""); engine.AsError(err).Code != codes.Forbidden {
		t.Fatalf("hook-denied trigger type: %v", err)
	}
	if err := s.RegisterTriggerType("tt-ok", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "t0", Type: "stream", FunctionID: "renamed", Config: json.RawMessage(`{"stream_name":"s"}`)}); engine.AsError(err).Code != codes.Forbidden {
		t.Fatalf("a trigger type outside allowed_trigger_types: %v", err)
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "t1", Type: "tt-ok", FunctionID: "denied-trig::x"}); engine.AsError(err).Code != codes.Forbidden {
		t.Fatalf("hook-denied trigger: %v", err)
	}
	go func() {
		c := <-p.configs
		s.Ack(c.id, nil)
	}()
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "t2", Type: "tt-ok", FunctionID: "renamed"}); err != nil {
		t.Fatal(err)
	}
	_, triggers := e.Triggers()
	for _, tr := range triggers {
		if tr.ID == "t2" && tr.FunctionID != "tenant::renamed" {
			t.Fatalf("trigger function %q, want the prefixed id", tr.FunctionID)
		}
	}

	// Reserved namespaces: with a prefix they cannot collide; without
	// one, and without a hook, they are refused.
	if err := s.RegisterFunction("stream::list(todos)", ""); err != nil {
		t.Fatalf("a prefixed custom stream function: %v", err)
	}
	s3, _ := granted(t, e, &engine.Access{}, `{}`)
	for _, id := range []string{"stream::list(todos)", "engine::functions::list", "stream::set"} {
		if err := s3.RegisterFunction(id, ""); engine.AsError(err).Code != codes.Forbidden || !strings.Contains(err.Error(), "reserved") {
			t.Fatalf("%s from a granted session: %v", id, err)
		}
	}

	// Defaults: function registration on, trigger type registration off.
	s2, _ := granted(t, e, &engine.Access{AuthFunctionID: ""}, `{"allow_function_registration":false}`)
	if err := s2.RegisterFunction("x", ""); engine.AsError(err).Code != codes.Forbidden {
		t.Fatalf("allow_function_registration false: %v", err)
	}
	if err := s2.RegisterTriggerType("tt2", ""); engine.AsError(err).Code != codes.Forbidden {
		t.Fatalf("trigger type registration by default: %v", err)
	}
}

// With a middleware, a granted session's calls go to it, with the target,
// the payload and the connection's context; infrastructure calls do not.
func TestMiddleware(t *testing.T) {
	e := newEngine(t, engine.Config{})
	target := register(t, e, "api::echo", answer(`"direct"`))
	var got engine.MiddlewareInput
	mw := register(t, e, "mw", func(c engine.Call) ([]byte, error) {
		_ = json.Unmarshal(c.Payload, &got)
		return []byte(`"via middleware"`), nil
	})
	s, _ := granted(t, e, &engine.Access{MiddlewareFunctionID: "mw", ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{"context":{"user_id":"u1"}}`)
	out, err := s.Call(t.Context(), engine.Call{FunctionID: "api::echo", Payload: []byte(`{"msg":"hi"}`)})
	if err != nil || string(out) != `"via middleware"` || target.Load() != 0 {
		t.Fatalf("call through the middleware: %s %v (target ran %d times)", out, err, target.Load())
	}
	if got.FunctionID != "api::echo" || string(got.Payload) != `{"msg":"hi"}` || string(got.Context) != `{"user_id":"u1"}` {
		t.Fatalf("middleware input %+v", got)
	}
	if out, err := s.Call(t.Context(), engine.Call{FunctionID: "engine::log::info", Payload: []byte(`{"message":"hi"}`)}); err != nil || string(out) != "null" || mw.Load() != 1 {
		t.Fatalf("infrastructure call: %s %v (middleware ran %d times)", out, err, mw.Load())
	}
	if _, err := s.Call(t.Context(), engine.Call{FunctionID: "private::x"}); engine.AsError(err).Code != codes.Forbidden {
		t.Fatalf("a forbidden call reached the middleware: %v", err)
	}
}

// expose_functions in iii's YAML forms: match("…") and match('…') strings,
// Trine's match: key, and metadata filters with exact values (compared as
// JSON values) and match("…") patterns for strings.
func TestExposeFilters(t *testing.T) {
	var a engine.Access
	src := `expose_functions:
  - match("api::*")
  - match('x::*')
  - match: "y::*"
  - metadata:
      public: true
      tier: match("gold*")
      n: 1
`
	if err := yaml.Unmarshal([]byte(src), &a); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"expose_functions: [\"api::*\"]\n", "expose_functions: [{}]\n", "expose_functions: [{match: a, metadata: {k: 1}}]\n"} {
		var b engine.Access
		if err := yaml.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	e := newEngine(t, engine.Config{})
	owner, _ := attach(t, e, "owner")
	for id, meta := range map[string]string{
		"meta::gold":   `{"public":true,"tier":"golden","n":1.0,"extra":"x"}`,
		"meta::silver": `{"public":true,"tier":"silver","n":1}`,
		"meta::n2":     `{"public":true,"tier":"gold","n":2}`,
		"meta::none":   ``,
		"meta::array":  `[1]`,
		"api::a":       ``, "x::b": ``, "y::c": ``, "z::d": ``,
	} {
		if err := owner.RegisterFunctionSpec(id, engine.FunctionSpec{Metadata: json.RawMessage(meta)}); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := granted(t, e, &a, `{}`)
	for id, want := range map[string]bool{"api::a": true, "x::b": true, "y::c": true, "z::d": false,
		"meta::gold": true, "meta::silver": false, "meta::n2": false, "meta::none": false, "meta::array": false} {
		err := s.CallVoid(engine.Call{FunctionID: id})
		if got := err == nil; got != want {
			t.Errorf("%s: %v, want allowed %v", id, err, want)
		}
	}
}

// engine::log::* write the worker's line to the engine's log with its
// identity, cut long fields, need a message, and drop a caller's lines
// past 100 a second.
func TestLogFunctions(t *testing.T) {
	var buf lockedBuf
	e := newEngine(t, engine.Config{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))})
	s, _ := attach(t, e, "logger")
	for _, lvl := range []string{"trace", "debug", "info", "warn", "error"} {
		if _, err := s.Call(t.Context(), engine.Call{FunctionID: "engine::log::" + lvl, Payload: []byte(`{"message":"hello ` + lvl + `","data":{"k":1},"trace_id":"t1"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	out := buf.String()
	for _, want := range []string{`"msg":"hello trace"`, `"level":"DEBUG-4"`, `"msg":"hello error"`, `"worker_name":"logger"`, `"data":"{\"k\":1}"`, `"trace_id":"t1"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %s:\n%s", want, out)
		}
	}
	if _, err := s.Call(t.Context(), engine.Call{FunctionID: "engine::log::info", Payload: []byte(`{}`)}); engine.AsError(err).Code != codes.InvalidArgument {
		t.Fatalf("no message: %v", err)
	}
	long := strings.Repeat("é", 5000)
	if _, err := s.Call(t.Context(), engine.Call{FunctionID: "engine::log::info", Payload: []byte(`{"message":"` + long + `"}`)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), long) {
		t.Fatal("a 10 KB message was logged whole")
	}
	before := strings.Count(buf.String(), "flood")
	for range 300 {
		_, _ = s.Call(t.Context(), engine.Call{FunctionID: "engine::log::info", Payload: []byte(`{"message":"flood"}`)})
	}
	if n := strings.Count(buf.String(), "flood") - before; n > 2*100 {
		t.Fatalf("%d of 300 lines logged within about a second; the limit is 100 a second", n)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// engine::functions-available fires (coalesced) when the function set
// changes; engine::workers-available for each worker event.
func TestAvailabilityTriggers(t *testing.T) {
	e := newEngine(t, engine.Config{})
	got := make(chan map[string]any, 64)
	if err := e.RegisterFunction("watch", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var m map[string]any
		_ = json.Unmarshal(c.Payload, &m)
		got <- m
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	owner, _ := attach(t, e, "owner")
	for i, typ := range []string{engine.TriggerFunctionsAvailable, engine.TriggerWorkersAvailable} {
		if err := owner.RegisterTrigger(t.Context(), engine.Trigger{ID: "w" + strconv.Itoa(i), Type: typ, FunctionID: "watch"}); err != nil {
			t.Fatal(err)
		}
	}
	next := func(what string) map[string]any {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(5 * time.Second):
			t.Fatalf("no notice for %s", what)
		}
		return nil
	}
	for _, id := range []string{"a::one", "a::two", "a::three"} {
		if err := owner.RegisterFunctionSpec(id, engine.FunctionSpec{RequestFormat: json.RawMessage(`{"type":"object"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	m := next("three registrations")
	// The notice says which functions there are, not their formats
	// (engine::functions::list and ::info do): it would grow with them.
	if notice := fmt.Sprint(m["functions"]); m["event"] != "functions_changed" || !strings.Contains(notice, "a::three") ||
		strings.Contains(notice, "request_format") || !strings.Contains(notice, "validated:true") {
		t.Fatalf("notice %v", m)
	}
	select {
	case m := <-got:
		t.Fatalf("three registrations within the settle time gave a second notice: %v", m)
	case <-time.After(300 * time.Millisecond):
	}
	w, err := e.Attach(engine.WorkerInfo{Name: "newcomer"}, newPeer())
	if err != nil {
		t.Fatal(err)
	}
	if m := next("connect"); m["event"] != "worker_connected" || m["worker_id"] != w.ID() {
		t.Fatalf("connect notice %v", m)
	}
	if err := w.Describe(engine.WorkerInfo{Name: "renamed"}); err != nil {
		t.Fatal(err)
	}
	if m := next("describe"); m["event"] != "worker_metadata_updated" {
		t.Fatalf("describe notice %v", m)
	}
	w.Close()
	if m := next("disconnect"); m["event"] != "worker_disconnected" || m["worker_id"] != w.ID() {
		t.Fatalf("disconnect notice %v", m)
	}
	if err := owner.UnregisterFunction("a::one"); err != nil {
		t.Fatal(err)
	}
	if m := next("unregister"); strings.Contains(fmt.Sprint(m["functions"]), "a::one") {
		t.Fatalf("the notice after unregistering still lists it: %v", m)
	}
}

// engine::triggers::list answers iii's shape (trigger types); the fuller
// listing is engine::triggers::overview.
func TestTriggersListShapes(t *testing.T) {
	e := newEngine(t, engine.Config{})
	s, _ := attach(t, e, "provider")
	if err := s.RegisterTriggerType("custom::tick", "ticks"); err != nil {
		t.Fatal(err)
	}
	out, err := e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnTriggersList})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Triggers []map[string]string `json:"triggers"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatal(err)
	}
	byID := map[string]map[string]string{}
	for _, tt := range list.Triggers {
		byID[tt["id"]] = tt
	}
	if c := byID["custom::tick"]; c["worker_name"] != "provider" || c["namespace"] != "default" || c["description"] != "ticks" {
		t.Fatalf("custom type: %v (%s)", c, out)
	}
	if b := byID[engine.TriggerFunctionsAvailable]; b["worker_name"] != "engine" {
		t.Fatalf("built-in type: %v", b)
	}
	out, err = e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnTriggersOverview})
	if err != nil || !strings.Contains(string(out), `"trigger_types"`) || !strings.Contains(string(out), `"provider_worker_name":"provider"`) {
		t.Fatalf("overview: %s %v", out, err)
	}
}

// TestRegistrationHookPayloads: each registration hook gets the fields of
// what is registered, under iii's names, and the connection's context.
func TestRegistrationHookPayloads(t *testing.T) {
	e := newEngine(t, engine.Config{})
	payloads := make(chan string, 3)
	for _, id := range []string{"hook::fn", "hook::tt", "hook::trigger"} {
		register(t, e, id, func(c engine.Call) ([]byte, error) {
			payloads <- string(c.Payload)
			return nil, errors.New("refused")
		})
	}
	a := &engine.Access{OnFunctionRegistration: "hook::fn", OnTriggerTypeRegistration: "hook::tt", OnTriggerRegistration: "hook::trigger"}
	s, _ := granted(t, e, a, `{"allow_trigger_type_registration":true,"context":{"user":"u"}}`)
	for _, tt := range []struct {
		register func() error
		want     string
	}{
		{func() error { return s.RegisterFunction("fn", "does fn") }, `{"function_id":"fn","description":"does fn","context":{"user":"u"}}`},
		{func() error { return s.RegisterTriggerType("tt", "") }, `{"trigger_type_id":"tt","context":{"user":"u"}}`},
		{func() error {
			return s.RegisterTrigger(t.Context(), engine.Trigger{ID: "t", Type: "tt", FunctionID: "fn", Config: json.RawMessage(`{"a":1}`)})
		}, `{"function_id":"fn","trigger_id":"t","trigger_type":"tt","config":{"a":1},"context":{"user":"u"}}`},
	} {
		if err := tt.register(); engine.AsError(err).Code != codes.Forbidden {
			t.Fatalf("refused by its hook: %v", err)
		}
		var got, want any
		if err := json.Unmarshal([]byte(<-payloads), &got); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal([]byte(tt.want), &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("hook payload %v, want %s", got, tt.want)
		}
	}
}
