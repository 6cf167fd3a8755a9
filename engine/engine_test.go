package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakePeer records what the engine sends to a worker.
type fakePeer struct {
	invokes chan engine.Invocation
	cancels chan string
	configs chan configReq
}

type configReq struct {
	id     string
	t      engine.Trigger
	remove bool
}

func newPeer() *fakePeer {
	return &fakePeer{invokes: make(chan engine.Invocation, 64), cancels: make(chan string, 64), configs: make(chan configReq, 64)}
}

func (p *fakePeer) Invoke(_ context.Context, inv engine.Invocation) error {
	p.invokes <- inv
	return nil
}
func (p *fakePeer) Cancel(id string) { p.cancels <- id }
func (p *fakePeer) ConfigureTrigger(_ context.Context, id string, t engine.Trigger, remove bool) error {
	p.configs <- configReq{id, t, remove}
	return nil
}

func newEngine(t *testing.T, cfg engine.Config) *engine.Engine {
	t.Helper()
	return enginetest.Run(t, cfg)
}

func attach(t *testing.T, e *engine.Engine, name string, fns ...string) (*engine.Session, *fakePeer) {
	t.Helper()
	p := newPeer()
	s, err := e.Attach(engine.WorkerInfo{Name: name}, p)
	if err != nil {
		t.Fatalf("Attach(%s) = %v", name, err)
	}
	t.Cleanup(s.Close)
	for _, fn := range fns {
		if err := s.RegisterFunction(fn, ""); err != nil {
			t.Fatalf("RegisterFunction(%q) = %v", fn, err)
		}
	}
	return s, p
}

func code(err error) engine.Code {
	if err == nil {
		return ""
	}
	return engine.AsError(err).Code
}

func TestValidateID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id string
		ok bool
	}{
		{"math::add", true}, {"a b", true}, {"a.*>:", true}, {"émoji 🎉", true}, {"流", true},
		{"", false}, {strings.Repeat("x", engine.MaxIDLength+1), false}, {"\xff", false},
		{"a\nb", false}, {"nul\x00", false}, {"zw\u200bj", false}, {"tab\t", false},
	}
	for _, tt := range tests {
		err := engine.ValidateID("function id", tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("ValidateID(%q) = %v, want invalid_argument", tt.id, err)
		}
	}
}

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"math::add", "", "a\nb", "🎉", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if engine.ValidateID("id", id) == nil && (!utf8.ValidString(id) || len(id) > engine.MaxIDLength || id == "") {
			t.Fatalf("ValidateID accepted %q", id)
		}
	})
}

func TestBuiltinsAndErrors(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{Version: "v9"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.RegisterFunction("t::plain", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("boom")
	})))
	must(e.RegisterFunction("t::coded", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, engine.Errorf(codes.Conflict, "stale")
	})))
	if err := e.RegisterFunction("t::plain", "", engine.HandlerFunc(nil)); code(err) != codes.Conflict {
		t.Fatalf("duplicate built-in = %v, want conflict", err)
	}
	_, err := e.Trigger(t.Context(), engine.Call{FunctionID: "t::plain"})
	if code(err) != codes.HandlerError || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("plain error = %v, want handler_error with message", err)
	}
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "t::coded"}); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("coded error = %v, want conflict", err)
	}
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "nope"}); !errors.Is(err, engine.ErrFunctionNotFound) {
		t.Fatalf("unknown = %v", err)
	}
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "t::coded", Payload: []byte("{")}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("bad JSON = %v", err)
	}
	s, _ := attach(t, e, "w1", "w::fn")
	_ = s
	out, err := e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnWorkersList})
	var wl struct {
		Workers []engine.WorkerStatus `json:"workers"`
	}
	if err != nil || json.Unmarshal(out, &wl) != nil || len(wl.Workers) != 1 || wl.Workers[0].Name != "w1" || wl.Workers[0].Functions[0] != "w::fn" {
		t.Fatalf("workers::list = %s, %v", out, err)
	}
	out, err = e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnFunctionsList, Payload: []byte(`{"prefix":"w::"}`)})
	var fl struct {
		Functions []engine.FunctionStatus `json:"functions"`
	}
	if err != nil || json.Unmarshal(out, &fl) != nil || len(fl.Functions) != 1 || fl.Functions[0].Replicas != 1 || fl.Functions[0].BuiltIn {
		t.Fatalf("functions::list = %s, %v", out, err)
	}
	out, err = e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnHealthCheck})
	var h engine.Health
	if err != nil || json.Unmarshal(out, &h) != nil || h.Status != "ok" || h.Version != "v9" || h.Workers != 1 {
		t.Fatalf("health = %s, %v", out, err)
	}
}

func TestDeadlinesAndCancel(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{DefaultTimeout: 50 * time.Millisecond})
	_, p := attach(t, e, "w", "slow")
	start := time.Now()
	_, err := e.Trigger(context.Background(), engine.Call{FunctionID: "slow"})
	if !errors.Is(err, engine.ErrDeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("default deadline: %v after %v", err, time.Since(start))
	}
	inv := <-p.invokes
	if inv.Deadline.IsZero() {
		t.Fatal("invocation carries no deadline")
	}
	if id := <-p.cancels; id != inv.InvocationID {
		t.Fatalf("cancel for %q, want %q", id, inv.InvocationID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-p.invokes; cancel() }()
	if _, err := e.Trigger(ctx, engine.Call{FunctionID: "slow", Timeout: time.Minute}); !errors.Is(err, engine.ErrCancelled) {
		t.Fatalf("cancelled call = %v", err)
	}
	<-p.cancels
}

func TestReplicasLeastInFlightAndDisconnect(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	var sessions []*engine.Session
	var peers []*fakePeer
	for _, n := range []string{"a", "b", "c"} {
		s, p := attach(t, e, n, "work")
		sessions, peers = append(sessions, s), append(peers, p)
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := e.Trigger(context.Background(), engine.Call{FunctionID: "work", Timeout: time.Minute})
			errs <- err
		}()
	}
	// With answers held back, three concurrent calls land on three replicas.
	got := map[int]engine.Invocation{}
	deadline := time.After(5 * time.Second)
	for len(got) < 3 {
		select {
		case inv := <-peers[0].invokes:
			got[0] = inv
		case inv := <-peers[1].invokes:
			got[1] = inv
		case inv := <-peers[2].invokes:
			got[2] = inv
		case <-deadline:
			t.Fatalf("calls reached replicas %v, want all three", got)
		}
	}
	start := time.Now()
	sessions[0].Close()
	if err := <-errs; !errors.Is(err, engine.ErrWorkerDisconnected) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("in-flight call on a closed replica = %v after %v", err, time.Since(start))
	}
	if sessions[1].Result(got[1].InvocationID, []byte(`1`), nil) != true || sessions[2].Result(got[2].InvocationID, []byte(`2`), nil) != true {
		t.Fatal("results not delivered")
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("surviving replica call = %v", err)
		}
	}
	if sessions[1].Result(got[1].InvocationID, []byte(`1`), nil) {
		t.Fatal("a second result for the same invocation was delivered")
	}
	sessions[1].Close()
	sessions[2].Close()
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "work"}); !errors.Is(err, engine.ErrFunctionNotFound) {
		t.Fatalf("after the last replica left: %v", err)
	}
	s, _ := attach(t, e, "d")
	if err := s.RegisterFunction("engine::x", ""); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("reserved id = %v", err)
	}
	if err := s.RegisterFunction(engine.FnHealthCheck+"x", ""); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("reserved id = %v", err)
	}
}

func TestVoid(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	_, p := attach(t, e, "w", "log")
	if err := e.TriggerVoid(engine.Call{FunctionID: "log", Payload: []byte(`"x"`)}); err != nil {
		t.Fatal(err)
	}
	if inv := <-p.invokes; !inv.Void || string(inv.Payload) != `"x"` {
		t.Fatalf("void invocation = %+v", inv)
	}
	if err := e.TriggerVoid(engine.Call{FunctionID: "nope"}); !errors.Is(err, engine.ErrFunctionNotFound) {
		t.Fatalf("void unknown = %v", err)
	}
}

func TestReattach(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	old, oldPeer := attach(t, e, "w", "fn")
	errc := make(chan error, 1)
	go func() {
		_, err := e.Trigger(context.Background(), engine.Call{FunctionID: "fn", Timeout: time.Minute})
		errc <- err
	}()
	<-oldPeer.invokes // the call is in flight on the old session
	wrong, err := e.Attach(engine.WorkerInfo{Name: "w", PreviousID: old.ID(), ReattachToken: "guess"}, newPeer())
	if err != nil || wrong.ID() == old.ID() {
		t.Fatalf("wrong token: %v, id %q", err, wrong.ID())
	}
	wrong.Close()
	fresh, err := e.Attach(engine.WorkerInfo{Name: "w", PreviousID: old.ID(), ReattachToken: old.ReattachToken()}, newPeer())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	select {
	case <-old.Done():
	default:
		t.Fatal("reattach left the old session open")
	}
	if fresh.ID() != old.ID() {
		t.Fatalf("reattached id %q, want %q", fresh.ID(), old.ID())
	}
	if err := <-errc; !errors.Is(err, engine.ErrWorkerDisconnected) {
		t.Fatalf("old session's call = %v", err)
	}
}

type provider struct {
	mu   sync.Mutex
	seen []string
}

func (p *provider) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	if string(t.Config) == `"bad"` {
		return errors.New("bad config")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, "+"+t.ID)
	return nil
}

func (p *provider) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, "-"+t.ID)
	return nil
}

func (p *provider) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.seen, " ")
}

func TestTriggers(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	bp := &provider{}
	if err := e.RegisterTriggerType("builtin", "", bp); err != nil {
		t.Fatal(err)
	}
	owner, _ := attach(t, e, "owner")
	other, _ := attach(t, e, "other")
	ctx := t.Context()
	if err := owner.RegisterTrigger(ctx, engine.Trigger{ID: "t1", Type: "builtin", FunctionID: "f"}); err != nil {
		t.Fatal(err)
	}
	if err := owner.RegisterTrigger(ctx, engine.Trigger{ID: "t2", Type: "builtin", FunctionID: "f", Config: []byte(`"bad"`)}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("bad config = %v", err)
	}
	if err := owner.RegisterTrigger(ctx, engine.Trigger{ID: "t3", Type: "none", FunctionID: "f"}); !errors.Is(err, engine.ErrTriggerTypeNotFound) {
		t.Fatalf("unknown type = %v", err)
	}
	if err := other.UnregisterTrigger(ctx, "t1"); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("foreign unregister = %v", err)
	}
	if err := other.RegisterTrigger(ctx, engine.Trigger{ID: "t1", Type: "builtin", FunctionID: "g"}); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("foreign id = %v", err)
	}
	owner.Close()
	deadline := time.Now().Add(5 * time.Second)
	for bp.log() != "+t1 -t1" {
		if time.Now().After(deadline) {
			t.Fatalf("provider saw %q, want +t1 -t1", bp.log())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A worker-provided type: the provider answers through Ack.
	prov, pp := attach(t, e, "provider")
	if err := prov.RegisterTriggerType("hook", ""); err != nil {
		t.Fatal(err)
	}
	go func() {
		for c := range pp.configs {
			var err *engine.Error
			if string(c.t.Config) == `"bad"` {
				err = engine.Errorf(codes.InvalidArgument, "no")
			}
			prov.Ack(c.id, err)
		}
	}()
	if err := other.RegisterTrigger(ctx, engine.Trigger{ID: "h1", Type: "hook", FunctionID: "f"}); err != nil {
		t.Fatalf("worker-provided type = %v", err)
	}
	if err := other.RegisterTrigger(ctx, engine.Trigger{ID: "h2", Type: "hook", FunctionID: "f", Config: []byte(`"bad"`)}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("provider refusal = %v", err)
	}
	prov.Close()
	close(pp.configs)
	_, ts := e.Triggers()
	if len(ts) != 1 || ts[0].ID != "h1" || ts[0].Status != "waiting_for_provider" {
		t.Fatalf("after the provider left: %+v", ts)
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	e, err := engine.New(engine.Config{ShutdownGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	_ = e.RegisterFunction("t::finish", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		<-release
		return []byte(`1`), nil
	}))
	started := make(chan struct{})
	_ = e.RegisterFunction("t::deaf", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		close(started)
		<-release // ignores its context
		return nil, nil
	}))
	s, err := e.Attach(engine.WorkerInfo{Name: "w"}, newPeer())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := e.Trigger(context.Background(), engine.Call{FunctionID: "t::deaf"}); errc <- err }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_ = e.Run(ctx) // grace 100ms, then another 100ms for the deaf handler
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("shutdown with a handler that ignores ctx took %v", el)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("session still open after shutdown")
	}
	if _, err := e.Trigger(context.Background(), engine.Call{FunctionID: "t::finish"}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("call after shutdown = %v", err)
	}
	if h := e.Health(); h.Status != "draining" {
		t.Fatalf("health after shutdown = %q", h.Status)
	}
	close(release)
	<-errc
}

// Once the grace period is over, shutdown cancels every call still in
// flight, the ones that came after others had finished included.
func TestHardStopCancelsCallsInFlight(t *testing.T) {
	t.Parallel()
	e, err := engine.New(engine.Config{ShutdownGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 16)
	if err := e.RegisterFunction("t::wait", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
		if string(c.Payload) == `"quick"` {
			return nil, nil
		}
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}
	for range 5 { // calls that come and go before the ones left in flight
		if _, err := e.Trigger(context.Background(), engine.Call{FunctionID: "t::wait", Payload: []byte(`"quick"`)}); err != nil {
			t.Fatal(err)
		}
	}
	const inFlight = 3
	errc := make(chan error, inFlight)
	for range inFlight {
		go func() {
			_, err := e.Trigger(context.Background(), engine.Call{FunctionID: "t::wait", Timeout: time.Hour})
			errc <- err
		}()
	}
	for range inFlight {
		<-started
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.Run(ctx)
	for range inFlight {
		select {
		case err := <-errc:
			if !errors.Is(err, engine.ErrCancelled) {
				t.Errorf("a call in flight at the hard stop ended with %v, want cancelled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call in flight at the hard stop was not cancelled")
		}
	}
	// A void call still running is cancelled too, and one started after
	// the stop would be: the engine refuses it first.
	if err := e.TriggerVoid(engine.Call{FunctionID: "t::wait"}); !errors.Is(err, engine.ErrUnavailable) {
		t.Errorf("a void call after shutdown = %v", err)
	}
}
