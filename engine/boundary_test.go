package engine_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// firer is a built-in trigger type that fires its triggers on demand, the
// way every module's provider does: the trigger's function, and the
// condition its config names first, through Engine.Fire.
type firer struct {
	e  *engine.Engine
	mu sync.Mutex
	ts map[string]engine.Trigger
}

func newFirer(t *testing.T, e *engine.Engine) *firer {
	t.Helper()
	f := &firer{e: e, ts: map[string]engine.Trigger{}}
	if err := e.RegisterTriggerType("fire", "fires on demand", f); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *firer) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ts[t.ID] = t
	return nil
}

func (f *firer) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ts, t.ID)
	return nil
}

func (f *firer) get(id string) (engine.Trigger, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.ts[id]
	return t, ok
}

// fire runs trigger id's condition (if its config names one), then its
// function, as the trigger's owner.
func (f *firer) fire(ctx context.Context, id string) ([]byte, error) {
	t, ok := f.get(id)
	if !ok {
		return nil, engine.Errorf(codes.TriggerNotFound, "no trigger %q", id)
	}
	var cfg struct {
		Condition string `json:"condition_function_id"`
	}
	_ = json.Unmarshal(t.Config, &cfg)
	if cfg.Condition != "" {
		if _, err := f.e.Fire(ctx, t, engine.Call{FunctionID: cfg.Condition}); err != nil {
			return nil, err
		}
	}
	return f.e.Fire(ctx, t, engine.Call{FunctionID: t.FunctionID, Payload: []byte(`{"fired":true}`)})
}

// A trigger is a call made later with its owner's rights: every function
// id it names (function_id, condition_function_id,
// middleware_function_ids, any *_function_id(s) of its config) is checked
// at registration, and nothing is kept when one is refused.
func TestTriggerTargetsCheckedAtRegistration(t *testing.T) {
	e := newEngine(t, engine.Config{})
	f := newFirer(t, e)
	secret := register(t, e, "admin::secret", answer(`"secret"`))
	register(t, e, "api::echo", answer(`"echo"`))
	s, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{}`)
	if err := s.RegisterFunction("mine::fn", ""); err != nil {
		t.Fatal(err)
	}
	for name, tr := range map[string]engine.Trigger{
		"function_id":             {ID: "t1", Type: "fire", FunctionID: "admin::secret"},
		"condition_function_id":   {ID: "t2", Type: "fire", FunctionID: "api::echo", Config: json.RawMessage(`{"condition_function_id":"admin::secret"}`)},
		"middleware_function_ids": {ID: "t3", Type: "fire", FunctionID: "api::echo", Config: json.RawMessage(`{"middleware_function_ids":["api::echo","admin::secret"]}`)},
		"any _function_id":        {ID: "t4", Type: "fire", FunctionID: "api::echo", Config: json.RawMessage(`{"on_error_function_id":"admin::secret"}`)},
		"a non-string id":         {ID: "t5", Type: "fire", FunctionID: "api::echo", Config: json.RawMessage(`{"condition_function_id":5}`)},
	} {
		err := s.RegisterTrigger(t.Context(), tr)
		if code(err) != codes.Forbidden && !(name == "a non-string id" && code(err) == codes.InvalidArgument) {
			t.Errorf("%s naming admin::secret: %v, want forbidden", name, err)
		}
		if _, kept := f.get(tr.ID); kept {
			t.Errorf("%s: the refused trigger reached the provider", name)
		}
	}
	_, ts := e.Triggers()
	if len(ts) != 0 {
		t.Fatalf("refused triggers were kept: %+v", ts)
	}
	if secret.Load() != 0 {
		t.Fatal("admin::secret ran")
	}
	// What the connection may call, and its own functions, are fine.
	for _, tr := range []engine.Trigger{
		{ID: "ok1", Type: "fire", FunctionID: "api::echo", Config: json.RawMessage(`{"condition_function_id":"api::echo"}`)},
		{ID: "ok2", Type: "fire", FunctionID: "mine::fn"},
	} {
		if err := s.RegisterTrigger(t.Context(), tr); err != nil {
			t.Errorf("trigger %s: %v", tr.ID, err)
		}
	}
}

// With a function_registration_prefix every function id inside a trigger
// takes the prefix, as the connection's own ids do: a condition or a
// middleware can never name a function outside the connection's space.
func TestTriggerFunctionIDsPrefixed(t *testing.T) {
	e := newEngine(t, engine.Config{})
	f := newFirer(t, e)
	secret := register(t, e, "admin::secret", answer(`"secret"`))
	s, _ := granted(t, e, &engine.Access{}, `{"function_registration_prefix":"tenant"}`)
	for _, id := range []string{"fn", "cond", "mw"} {
		if err := s.RegisterFunction(id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "p", Type: "fire", FunctionID: "fn",
		Config: json.RawMessage(`{"condition_function_id":"cond","middleware_function_ids":["mw"],"other":1}`)}); err != nil {
		t.Fatal(err)
	}
	got, _ := f.get("p")
	var cfg struct {
		Condition  string   `json:"condition_function_id"`
		Middleware []string `json:"middleware_function_ids"`
		Other      int      `json:"other"`
	}
	if err := json.Unmarshal(got.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if got.FunctionID != "tenant::fn" || cfg.Condition != "tenant::cond" || !slices.Equal(cfg.Middleware, []string{"tenant::mw"}) || cfg.Other != 1 {
		t.Fatalf("the provider got %s with config %s", got.FunctionID, got.Config)
	}
	// admin::secret becomes tenant::admin::secret, which does not exist:
	// refused or not, it never reaches admin::secret.
	_ = s.RegisterTrigger(t.Context(), engine.Trigger{ID: "q", Type: "fire", FunctionID: "fn",
		Config: json.RawMessage(`{"condition_function_id":"admin::secret"}`)})
	if tr, ok := f.get("q"); ok {
		_, _ = f.fire(t.Context(), "q")
		if !strings.HasPrefix(string(tr.Config), `{"condition_function_id":"tenant::`) {
			t.Fatalf("unprefixed condition %s", tr.Config)
		}
	}
	if secret.Load() != 0 {
		t.Fatal("admin::secret ran as a condition")
	}
}

// The check runs again when the trigger fires: a function that appears
// after registration is still out of reach, and a fire goes through the
// owner's listener middleware.
func TestFireRunsWithOwnersRights(t *testing.T) {
	e := newEngine(t, engine.Config{})
	f := newFirer(t, e)
	var mwIn []engine.MiddlewareInput
	var mu sync.Mutex
	mw := register(t, e, "mw", func(c engine.Call) ([]byte, error) {
		var in engine.MiddlewareInput
		_ = json.Unmarshal(c.Payload, &in)
		mu.Lock()
		mwIn = append(mwIn, in)
		mu.Unlock()
		return []byte(`"via middleware"`), nil
	})
	echo := register(t, e, "api::echo", answer(`"echo"`))
	s, _ := granted(t, e, &engine.Access{MiddlewareFunctionID: "mw", ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{"context":{"user":"u"}}`)
	// late::fn does not exist yet: the registration cannot be decided on
	// its metadata, so the fire decides.
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "late", Type: "fire", FunctionID: "late::fn"}); err != nil {
		t.Fatal(err)
	}
	late := register(t, e, "late::fn", answer(`"late"`))
	if _, err := f.fire(t.Context(), "late"); code(err) != codes.Forbidden {
		t.Fatalf("fire of a function the owner may not call: %v", err)
	}
	if late.Load() != 0 || mw.Load() != 0 {
		t.Fatal("a forbidden fire ran something")
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "ok", Type: "fire", FunctionID: "api::echo"}); err != nil {
		t.Fatal(err)
	}
	out, err := f.fire(t.Context(), "ok")
	if err != nil || string(out) != `"via middleware"` || echo.Load() != 0 {
		t.Fatalf("fire: %s %v (target ran %d times)", out, err, echo.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(mwIn) != 1 || mwIn[0].FunctionID != "api::echo" || string(mwIn[0].Context) != `{"user":"u"}` || string(mwIn[0].Payload) != `{"fired":true}` {
		t.Fatalf("middleware input %+v", mwIn)
	}
}

// A trusted session's triggers, and triggers handed to a provider by
// hand, run as before.
func TestFireTrusted(t *testing.T) {
	e := newEngine(t, engine.Config{})
	f := newFirer(t, e)
	secret := register(t, e, "admin::secret", answer(`"secret"`))
	s, _ := attach(t, e, "trusted")
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "a", Type: "fire", FunctionID: "admin::secret"}); err != nil {
		t.Fatal(err)
	}
	if out, err := f.fire(t.Context(), "a"); err != nil || string(out) != `"secret"` {
		t.Fatalf("trusted fire: %s %v", out, err)
	}
	if out, err := e.Fire(t.Context(), engine.Trigger{ID: "x", FunctionID: "admin::secret"}, engine.Call{FunctionID: "admin::secret"}); err != nil || string(out) != `"secret"` {
		t.Fatalf("ownerless fire: %s %v", out, err)
	}
	if secret.Load() != 2 {
		t.Fatalf("ran %d times", secret.Load())
	}
}

// A connection under a policy never joins a replica set served by another
// policy or identity; a trusted worker's registration takes the id back.
func TestReplicaSetsKeepOnePrincipal(t *testing.T) {
	e := newEngine(t, engine.Config{})
	a := &engine.Access{ExposeFunctions: []engine.Filter{{Metadata: map[string]json.RawMessage{"public": json.RawMessage("true")}}}}
	trusted, tp := attach(t, e, "trusted", "admin::secret")
	stranger, sp := granted(t, e, a, `{"context":{"user":"mallory"}}`)
	err := stranger.RegisterFunctionSpec("admin::secret", engine.FunctionSpec{Metadata: json.RawMessage(`{"public":true}`)})
	if code(err) != codes.Conflict {
		t.Fatalf("a granted session joining a trusted replica set: %v", err)
	}
	// The trusted function kept no metadata: the stranger may not call it.
	caller, _ := granted(t, e, a, `{}`)
	if _, err := caller.Call(t.Context(), engine.Call{FunctionID: "admin::secret", Timeout: time.Second}); code(err) != codes.Forbidden {
		t.Fatalf("call after the metadata attack: %v", err)
	}
	// Two connections the auth function answers alike are one principal:
	// replicas. Another answer on the same listener is another identity.
	as := byUser(t, e, engine.Filter{Match: "*"})
	g1, g2 := as("u1"), as("u1")
	if err := g1.RegisterFunction("shared::x", ""); err != nil {
		t.Fatal(err)
	}
	if err := g2.RegisterFunction("shared::x", ""); err != nil {
		t.Fatalf("a second connection of the same principal: %v", err)
	}
	other := as("u2")
	if err := other.RegisterFunction("shared::x", ""); code(err) != codes.Conflict {
		t.Fatalf("another identity joining: %v", err)
	}
	// A trusted worker registering an id a stranger took first serves it
	// alone from then on.
	if err := stranger.RegisterFunction("squat::fn", ""); err != nil {
		t.Fatal(err)
	}
	if err := trusted.RegisterFunction("squat::fn", ""); err != nil {
		t.Fatalf("trusted registration over a granted one: %v", err)
	}
	go func() {
		_, _ = e.Trigger(context.Background(), engine.Call{FunctionID: "squat::fn", Timeout: time.Second})
	}()
	select {
	case inv := <-tp.invokes:
		trusted.Result(inv.InvocationID, []byte("1"), nil)
	case inv := <-sp.invokes:
		t.Fatalf("the squatter was invoked: %+v", inv)
	case <-time.After(5 * time.Second):
		t.Fatal("no invocation")
	}
	for _, f := range e.Functions() {
		if f.FunctionID == "squat::fn" && f.Replicas != 1 {
			t.Fatalf("squat::fn has %d replicas", f.Replicas)
		}
	}
}

// Metadata belongs to the replica that registered it: exposure by a
// metadata filter needs every replica's metadata to match, and leaves
// with the replica.
func TestMetadataBelongsToItsReplica(t *testing.T) {
	e := newEngine(t, engine.Config{})
	a := &engine.Access{ExposeFunctions: []engine.Filter{{Metadata: map[string]json.RawMessage{"public": json.RawMessage("true")}}}}
	caller, _ := granted(t, e, a, `{}`)
	r1, _ := attach(t, e, "r1")
	r2, _ := attach(t, e, "r2")
	if err := r1.RegisterFunctionSpec("svc::fn", engine.FunctionSpec{}); err != nil {
		t.Fatal(err)
	}
	if err := r2.RegisterFunctionSpec("svc::fn", engine.FunctionSpec{Metadata: json.RawMessage(`{"public":true}`)}); err != nil {
		t.Fatal(err)
	}
	callable := func() bool { return caller.CallVoid(engine.Call{FunctionID: "svc::fn"}) == nil }
	if callable() {
		t.Fatal("a replica's metadata exposed the other replica")
	}
	r1.Close()
	if !callable() {
		t.Fatal("the only replica is public, yet the call is refused")
	}
	r2.Close()
	r3, _ := attach(t, e, "r3")
	if err := r3.RegisterFunction("svc::fn", ""); err != nil {
		t.Fatal(err)
	}
	if callable() {
		t.Fatal("metadata outlived the replica that registered it")
	}
	info, ok := e.FunctionInfo("svc::fn")
	if !ok || string(info.Metadata) != "null" {
		t.Fatalf("info metadata %s", info.Metadata)
	}
}

// Discovery shows a restricted connection only what it may call.
func TestDiscoveryShowsOnlyCallable(t *testing.T) {
	e := newEngine(t, engine.Config{})
	f := newFirer(t, e)
	_ = f
	owner, _ := attach(t, e, "private-owner")
	for _, id := range []string{"api::echo", "private::x", "allowed::y"} {
		if err := owner.RegisterFunctionSpec(id, engine.FunctionSpec{Description: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := owner.RegisterFunctionSpec("meta::pub", engine.FunctionSpec{Metadata: json.RawMessage(`{"public":true}`)}); err != nil {
		t.Fatal(err)
	}
	if err := owner.RegisterTrigger(t.Context(), engine.Trigger{ID: "private-trigger", Type: "fire", FunctionID: "private::x"}); err != nil {
		t.Fatal(err)
	}
	a := &engine.Access{ExposeFunctions: []engine.Filter{
		{Match: "api::*"}, {Match: "engine::*::list"}, {Match: "engine::*::info"}, {Match: "engine::triggers::overview"},
		{Metadata: map[string]json.RawMessage{"public": json.RawMessage("true")}},
	}}
	s, _ := granted(t, e, a, `{"allowed_functions":["allowed::y"],"allowed_trigger_types":["fire"]}`)
	call := func(fn, payload string) (string, error) {
		out, err := s.Call(t.Context(), engine.Call{FunctionID: fn, Payload: []byte(payload)})
		return string(out), err
	}
	out, err := call(engine.FnFunctionsList, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"api::echo", "allowed::y", "meta::pub", engine.FnFunctionsList} {
		if !strings.Contains(out, `"`+want+`"`) {
			t.Errorf("functions::list lacks %s: %s", want, out)
		}
	}
	for _, hidden := range []string{"private::x", "engine::health::check"} {
		if strings.Contains(out, hidden) {
			t.Errorf("functions::list shows %s: %s", hidden, out)
		}
	}
	if _, err := call(engine.FnFunctionsInfo, `{"function_id":"private::x"}`); code(err) != codes.FunctionNotFound {
		t.Errorf("functions::info of a hidden function: %v", err)
	}
	if out, err := call(engine.FnFunctionsInfo, `{"function_id":"api::echo"}`); err != nil || strings.Contains(out, "private-trigger") {
		t.Errorf("functions::info of api::echo: %s %v", out, err)
	}
	for _, fn := range []string{engine.FnTriggersOverview, engine.FnRegisteredTriggersList, engine.FnTriggersList, engine.FnWorkersList} {
		out, err := call(fn, `{}`)
		if err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		for _, hidden := range []string{"private-trigger", "private::x", "private-owner", engine.TriggerFunctionsAvailable, `"trigger_count":1`} {
			if strings.Contains(out, hidden) {
				t.Errorf("%s shows %s: %s", fn, hidden, out)
			}
		}
	}
	if _, err := call(engine.FnRegisteredTriggersInfo, `{"trigger_id":"private-trigger"}`); code(err) != codes.TriggerNotFound {
		t.Errorf("registered-triggers::info of a hidden trigger: %v", err)
	}
	if _, err := call(engine.FnWorkersInfo, `{"worker_id":"`+owner.ID()+`"}`); err == nil {
		t.Errorf("workers::info of another worker answered")
	}
	if out, err := call(engine.FnWorkersInfo, `{"worker_id":"`+s.ID()+`"}`); err != nil || !strings.Contains(out, s.ID()) {
		t.Errorf("workers::info of itself: %s %v", out, err)
	}
	if _, err := call(engine.FnTriggersInfo, `{"trigger_type":"`+engine.TriggerWorkersAvailable+`"}`); code(err) != codes.TriggerTypeNotFound {
		t.Errorf("triggers::info of a type outside allowed_trigger_types: %v", err)
	}
}

// engine::functions-available tells a restricted owner only of what it
// may call.
func TestFunctionsAvailableFiltered(t *testing.T) {
	e := newEngine(t, engine.Config{})
	got := make(chan string, 16)
	a := &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}
	s, p := granted(t, e, a, `{}`)
	if err := s.RegisterFunction("api::watch", ""); err != nil {
		t.Fatal(err)
	}
	go func() {
		for inv := range p.invokes {
			got <- string(inv.Payload)
		}
	}()
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "w", Type: engine.TriggerFunctionsAvailable, FunctionID: "api::watch"}); err != nil {
		t.Fatal(err)
	}
	owner, _ := attach(t, e, "owner")
	if err := owner.RegisterFunction("private::new", ""); err != nil {
		t.Fatal(err)
	}
	if err := owner.RegisterFunction("api::new", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if strings.Contains(m, "private::new") || !strings.Contains(m, "api::new") {
			t.Fatalf("notice %s", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notice")
	}
	s.Close()
	close(p.invokes)
}

// Triggers are capped per connection and in total; replacing a trigger
// the connection owns is not a new one, and a refusal keeps nothing.
func TestTriggerCaps(t *testing.T) {
	e := newEngine(t, engine.Config{MaxTriggersPerWorker: 3, MaxTriggers: 5})
	f := newFirer(t, e)
	register(t, e, "fn", answer("1"))
	s, _ := attach(t, e, "greedy")
	for i := range 3 {
		if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "g" + string(rune('0'+i)), Type: "fire", FunctionID: "fn"}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "g3", Type: "fire", FunctionID: "fn"})
	if code(err) != codes.Overloaded || !strings.Contains(err.Error(), "3") {
		t.Fatalf("4th trigger: %v", err)
	}
	if _, ok := f.get("g3"); ok {
		t.Fatal("the refused trigger reached its provider")
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "g0", Type: "fire", FunctionID: "fn", Config: json.RawMessage(`{}`)}); err != nil {
		t.Fatalf("replacing an owned trigger: %v", err)
	}
	o, _ := attach(t, e, "other")
	for i := range 2 {
		if err := o.RegisterTrigger(t.Context(), engine.Trigger{ID: "o" + string(rune('0'+i)), Type: "fire", FunctionID: "fn"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.RegisterTrigger(t.Context(), engine.Trigger{ID: "o2", Type: "fire", FunctionID: "fn"}); code(err) != codes.Overloaded {
		t.Fatalf("past the total cap: %v", err)
	}
	s.Close()
	if err := o.RegisterTrigger(t.Context(), engine.Trigger{ID: "o2", Type: "fire", FunctionID: "fn"}); err != nil {
		t.Fatalf("after another connection left: %v", err)
	}
}

// The triggers of a connection under a policy fire at most
// TriggerFireRate times a second (with a burst of as many); past it a fire
// is refused with overloaded and runs nothing, and other owners are not
// slowed.
func TestTriggerFireRate(t *testing.T) {
	e := newEngine(t, engine.Config{TriggerFireRate: 5})
	f := newFirer(t, e)
	var ran atomic.Int32
	register(t, e, "api::fn", func(engine.Call) ([]byte, error) { ran.Add(1); return []byte("1"), nil })
	s, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{}`)
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "hot", Type: "fire", FunctionID: "api::fn"}); err != nil {
		t.Fatal(err)
	}
	trusted, _ := attach(t, e, "trusted")
	if err := trusted.RegisterTrigger(t.Context(), engine.Trigger{ID: "calm", Type: "fire", FunctionID: "api::fn"}); err != nil {
		t.Fatal(err)
	}
	var refused int
	for range 50 {
		if _, err := f.fire(t.Context(), "hot"); code(err) == codes.Overloaded {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused < 40 || int(ran.Load()) != 50-refused {
		t.Fatalf("50 fires in a burst: %d refused, %d ran", refused, ran.Load())
	}
	for range 50 {
		if _, err := f.fire(t.Context(), "calm"); err != nil {
			t.Fatalf("a trusted owner's trigger was limited: %v", err)
		}
	}
}

// readGuarded is a trigger type whose triggers get what data::read gives.
type readGuarded struct{ firer }

func (*readGuarded) ReadFunction(engine.Trigger) string { return "data::read" }

// A trigger that hands its function what a function reads (a state or
// stream change, a join's subscriber) needs the right to call that
// function, even when its own function is the connection's.
func TestReadGuardedTriggerTypes(t *testing.T) {
	e := newEngine(t, engine.Config{})
	p := &readGuarded{firer{e: e, ts: map[string]engine.Trigger{}}}
	if err := e.RegisterTriggerType("data", "", p); err != nil {
		t.Fatal(err)
	}
	register(t, e, "data::read", answer("1"))
	denied, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{}`)
	if err := denied.RegisterFunction("mine::fn", ""); err != nil {
		t.Fatal(err)
	}
	if err := denied.RegisterTrigger(t.Context(), engine.Trigger{ID: "d", Type: "data", FunctionID: "mine::fn"}); code(err) != codes.Forbidden || !strings.Contains(err.Error(), "data::read") {
		t.Fatalf("a data trigger without the right to read: %v", err)
	}
	if _, ok := p.get("d"); ok {
		t.Fatal("the refused trigger reached its provider")
	}
	allowed, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "data::*"}}}, `{}`)
	if err := allowed.RegisterFunction("mine2::fn", ""); err != nil {
		t.Fatal(err)
	}
	if err := allowed.RegisterTrigger(t.Context(), engine.Trigger{ID: "a", Type: "data", FunctionID: "mine2::fn"}); err != nil {
		t.Fatalf("a data trigger with the right to read: %v", err)
	}
}

// With a middleware, an enqueue of a connection under the policy goes to
// the middleware with its action, as in iii; without, to the queue.
func TestEnqueueThroughMiddleware(t *testing.T) {
	e := newEngine(t, engine.Config{})
	var got engine.MiddlewareInput
	mw := register(t, e, "mw", func(c engine.Call) ([]byte, error) {
		_ = json.Unmarshal(c.Payload, &got)
		return []byte(`{"message_receipt_id":"r"}`), nil
	})
	queued := new(atomic.Int32)
	e.SetEnqueuer(enqueuerFunc(func(context.Context, string, engine.Call) ([]byte, error) {
		queued.Add(1)
		return []byte(`{"message_receipt_id":"q"}`), nil
	}))
	register(t, e, "api::job", answer("1"))
	s, _ := granted(t, e, &engine.Access{MiddlewareFunctionID: "mw", ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{"context":{"user":"u"}}`)
	if _, err := s.Enqueue(t.Context(), "jobs", engine.Call{FunctionID: "admin::x"}); code(err) != codes.Forbidden {
		t.Fatalf("enqueue of a hidden function: %v", err)
	}
	out, err := s.Enqueue(t.Context(), "jobs", engine.Call{FunctionID: "api::job", Payload: []byte(`{"n":1}`)})
	if err != nil || mw.Load() != 1 || queued.Load() != 0 {
		t.Fatalf("enqueue: %s %v (middleware %d, queue %d)", out, err, mw.Load(), queued.Load())
	}
	if got.FunctionID != "api::job" || string(got.Action) != `{"queue":"jobs","type":"enqueue"}` || string(got.Context) != `{"user":"u"}` {
		t.Fatalf("middleware input %+v (action %s)", got, got.Action)
	}
}

type enqueuerFunc func(context.Context, string, engine.Call) ([]byte, error)

func (f enqueuerFunc) Enqueue(ctx context.Context, q string, c engine.Call) ([]byte, error) {
	return f(ctx, q, c)
}

// A restricted connection sees its own functions in discovery, even when
// it may not call them.
func TestDiscoveryShowsOwnFunctions(t *testing.T) {
	e := newEngine(t, engine.Config{})
	s, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "engine::functions::*"}}}, `{}`)
	if err := s.RegisterFunction("own::fn", ""); err != nil {
		t.Fatal(err)
	}
	out, err := s.Call(t.Context(), engine.Call{FunctionID: engine.FnFunctionsInfo, Payload: []byte(`{"function_id":"own::fn"}`)})
	if err != nil || !strings.Contains(string(out), "own::fn") {
		t.Fatalf("info of its own function: %s %v", out, err)
	}
}

// Functions are capped per connection and in total, and what registrations
// hold (descriptions, metadata, schemas, trigger configs) is capped in
// bytes per connection and in total; a refusal keeps nothing, and what a
// connection held is given back when it leaves.
func TestRegistrationCaps(t *testing.T) {
	e := newEngine(t, engine.Config{MaxFunctionsPerWorker: 3, MaxFunctions: 200, MaxRegistrationBytesPerWorker: 10 << 10, MaxRegistrationBytes: 12 << 10})
	newFirer(t, e)
	s, _ := attach(t, e, "greedy")
	for i := range 3 {
		if err := s.RegisterFunction("f::"+string(rune('a'+i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RegisterFunction("f::d", ""); code(err) != codes.Overloaded {
		t.Fatalf("4th function: %v", err)
	}
	if err := s.RegisterFunction("f::a", "again"); err != nil {
		t.Fatalf("registering an owned function again: %v", err)
	}
	big := `"` + strings.Repeat("x", 6<<10) + `"`
	fat, _ := attach(t, e, "fat")
	if err := fat.RegisterFunctionSpec("g::a", engine.FunctionSpec{RequestFormat: json.RawMessage(`{"description":` + big + `}`)}); err != nil {
		t.Fatal(err)
	}
	if err := fat.RegisterFunctionSpec("g::b", engine.FunctionSpec{Metadata: json.RawMessage(`{"m":` + big + `}`)}); code(err) != codes.Overloaded {
		t.Fatalf("past the bytes per connection: %v", err)
	}
	if err := fat.RegisterTrigger(t.Context(), engine.Trigger{ID: "t", Type: "fire", FunctionID: "g::a", Config: json.RawMessage(`{"c":` + big + `}`)}); code(err) != codes.Overloaded {
		t.Fatalf("a trigger past the bytes per connection: %v", err)
	}
	other, _ := attach(t, e, "other")
	if err := other.RegisterFunctionSpec("h::a", engine.FunctionSpec{Description: strings.Repeat("d", 4<<10)}); err != nil {
		t.Fatal(err)
	}
	if err := other.RegisterFunctionSpec("h::b", engine.FunctionSpec{Description: strings.Repeat("d", 4<<10)}); code(err) != codes.Overloaded {
		t.Fatalf("past the total bytes: %v", err)
	}
	for _, f := range e.Functions() {
		if f.FunctionID == "f::d" || f.FunctionID == "g::b" || f.FunctionID == "h::b" {
			t.Fatalf("a refused registration was kept: %s", f.FunctionID)
		}
	}
	fat.Close()
	if err := other.RegisterFunctionSpec("h::b", engine.FunctionSpec{Description: strings.Repeat("d", 4<<10)}); err != nil {
		t.Fatalf("after another connection left: %v", err)
	}
}

// Function ids in a trigger config are found whatever the spelling of
// their key (a Go provider decodes keys without case) and however deep;
// for a type a worker provides, an id no one serves yet, and a registered
// function named in any field, are refused, since that worker's own calls
// fire it.
func TestTriggerConfigIDsAnySpelling(t *testing.T) {
	e := newEngine(t, engine.Config{})
	newFirer(t, e)
	register(t, e, "admin::secret", answer(`"secret"`))
	prov, pp := attach(t, e, "provider")
	if err := prov.RegisterTriggerType("tick", ""); err != nil {
		t.Fatal(err)
	}
	go func() {
		for c := range pp.configs {
			prov.Ack(c.id, nil)
		}
	}()
	s, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{}`)
	if err := s.RegisterFunction("mine::fn", ""); err != nil {
		t.Fatal(err)
	}
	for name, tr := range map[string]engine.Trigger{
		"UPPER":          {ID: "u", Type: "fire", FunctionID: "mine::fn", Config: json.RawMessage(`{"CONDITION_FUNCTION_ID":"admin::secret"}`)},
		"Mixed":          {ID: "m", Type: "tick", FunctionID: "mine::fn", Config: json.RawMessage(`{"Condition_Function_Id":"admin::secret"}`)},
		"camel":          {ID: "c", Type: "tick", FunctionID: "mine::fn", Config: json.RawMessage(`{"conditionFunctionId":"admin::secret"}`)},
		"long s":         {ID: "ls", Type: "fire", FunctionID: "mine::fn", Config: json.RawMessage(`{"middleware_function_idſ":["admin::secret"]}`)},
		"Kelvin":         {ID: "kv", Type: "fire", FunctionID: "mine::fn", Config: json.RawMessage(`{"on_error_function_K":"x","condition_function_idK":"y","middleware_function_ids":["api::x"],"tasK_function_id":"admin::secret"}`)},
		"nested":         {ID: "n", Type: "fire", FunctionID: "mine::fn", Config: json.RawMessage(`{"a":{"b":[{"on_error_function_id":"admin::secret"}]}}`)},
		"nested list":    {ID: "nl", Type: "tick", FunctionID: "mine::fn", Config: json.RawMessage(`{"a":{"middlewareFunctionIds":["admin::secret"]}}`)},
		"unknown target": {ID: "ut", Type: "tick", FunctionID: "later::fn"},
		"any field":      {ID: "af", Type: "tick", FunctionID: "mine::fn", Config: json.RawMessage(`{"target":"admin::secret"}`)},
	} {
		if err := s.RegisterTrigger(t.Context(), tr); code(err) != codes.Forbidden {
			t.Errorf("%s: %v, want forbidden", name, err)
		}
	}
	// A built-in type checks again when it fires: an unknown id passes.
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "later", Type: "fire", FunctionID: "later::fn"}); err != nil {
		t.Errorf("an unknown id on a built-in type: %v", err)
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "own", Type: "tick", FunctionID: "mine::fn", Config: json.RawMessage(`{"label":"api::echo"}`)}); err != nil {
		t.Errorf("a worker-provided trigger on its own function: %v", err)
	}
	prov.Close()
	close(pp.configs)
}

// The connections of one identity under a policy share one allowance:
// opening more connections gives a token no more triggers, functions or
// fires. Another identity has its own.
func TestOneIdentityOneAllowance(t *testing.T) {
	e := newEngine(t, engine.Config{MaxTriggersPerWorker: 2, MaxFunctionsPerWorker: 2, TriggerFireRate: 3})
	f := newFirer(t, e)
	register(t, e, "api::fn", answer("1"))
	as := byUser(t, e, engine.Filter{Match: "api::*"})
	m1, m2, other := as("mallory"), as("mallory"), as("alice")
	for i, s := range []*engine.Session{m1, m2} {
		if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "m" + string(rune('0'+i)), Type: "fire", FunctionID: "api::fn"}); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterFunction("mallory::f"+string(rune('0'+i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	m3 := as("mallory")
	if err := m3.RegisterTrigger(t.Context(), engine.Trigger{ID: "m2", Type: "fire", FunctionID: "api::fn"}); code(err) != codes.Overloaded {
		t.Fatalf("a third connection of one identity past its trigger cap: %v", err)
	}
	if err := m3.RegisterFunction("mallory::f2", ""); code(err) != codes.Overloaded {
		t.Fatalf("a third connection of one identity past its function cap: %v", err)
	}
	if err := other.RegisterTrigger(t.Context(), engine.Trigger{ID: "a0", Type: "fire", FunctionID: "api::fn"}); err != nil {
		t.Fatalf("another identity: %v", err)
	}
	var refused int
	for range 10 {
		for _, id := range []string{"m0", "m1"} {
			if _, err := f.fire(t.Context(), id); code(err) == codes.Overloaded {
				refused++
			}
		}
	}
	if refused < 15 {
		t.Fatalf("20 fires of one identity's two connections at 3 a second: only %d refused", refused)
	}
	if _, err := f.fire(t.Context(), "a0"); err != nil {
		t.Fatalf("another identity's fire: %v", err)
	}
	m1.Close()
	if err := m3.RegisterTrigger(t.Context(), engine.Trigger{ID: "m2", Type: "fire", FunctionID: "api::fn"}); err != nil {
		t.Fatalf("after one connection of the identity left: %v", err)
	}
}

// The engine's listings refuse an answer past MaxListBytes before they
// encode it, and a narrower one still answers.
func TestListingsBounded(t *testing.T) {
	e := newEngine(t, engine.Config{MaxListBytes: 64 << 10})
	newFirer(t, e)
	register(t, e, "fn", answer("1"))
	s, _ := attach(t, e, "many")
	big := `{"c":"` + strings.Repeat("x", 10<<10) + `"}`
	for i := range 10 {
		if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "big" + string(rune('a'+i)), Type: "fire", FunctionID: "fn", Config: json.RawMessage(big)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, fn := range []string{engine.FnRegisteredTriggersList, engine.FnTriggersOverview, engine.FnFunctionsInfo} {
		_, err := e.Trigger(t.Context(), engine.Call{FunctionID: fn, Payload: []byte(`{"function_id":"fn"}`)})
		if code(err) != codes.MessageTooLarge || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("%s of 100 KiB with a 64 KiB cap: %v", fn, err)
		}
	}
	out, err := e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnRegisteredTriggersList, Payload: []byte(`{"prefix":"biga"}`)})
	if err != nil || !strings.Contains(string(out), "biga") {
		t.Fatalf("a narrowed listing: %v", err)
	}
}

// engine::workers-available names every worker: a connection that may
// not list workers may not watch them either.
func TestWorkersAvailableNeedsWorkersList(t *testing.T) {
	e := newEngine(t, engine.Config{})
	s, _ := granted(t, e, &engine.Access{ExposeFunctions: []engine.Filter{{Match: "api::*"}}}, `{}`)
	if err := s.RegisterFunction("mine::watch", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "w", Type: engine.TriggerWorkersAvailable, FunctionID: "mine::watch"}); code(err) != codes.Forbidden {
		t.Fatalf("workers-available without engine::workers::list: %v", err)
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "f", Type: engine.TriggerFunctionsAvailable, FunctionID: "mine::watch"}); err != nil {
		t.Fatalf("functions-available (filtered): %v", err)
	}
}

// byUser gives a listener whose auth function answers each connection
// with its x-user header as context, exposing expose; it returns a
// function that attaches a session as one user (same user, same identity).
func byUser(t *testing.T, e *engine.Engine, expose engine.Filter) func(user string) *engine.Session {
	t.Helper()
	register(t, e, "auth::by-user", func(c engine.Call) ([]byte, error) {
		var in engine.AuthInput
		_ = json.Unmarshal(c.Payload, &in)
		return json.Marshal(map[string]any{"context": map[string]string{"user": in.Headers["x-user"]}})
	})
	a := &engine.Access{AuthFunctionID: "auth::by-user", ExposeFunctions: []engine.Filter{expose}}
	return func(user string) *engine.Session {
		t.Helper()
		g, err := e.Authenticate(t.Context(), a, engine.AuthInput{Headers: map[string]string{"x-user": user}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.AttachGranted(engine.WorkerInfo{Name: user}, newPeer(), g)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
}
