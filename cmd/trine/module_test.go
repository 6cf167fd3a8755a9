package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// greeter is a module built on engine.Module alone: one function,
// greet::hello, and one trigger type, greet:hello, whose triggers run
// their function (behind their condition) for every greeting.
type greeter struct {
	e      *engine.Engine
	subs   *engine.TriggerSet[engine.Trigger]
	closed atomic.Bool
}

func newGreeter() *greeter {
	return &greeter{subs: engine.NewTriggerSet[engine.Trigger]("the greeter module")}
}

func (g *greeter) Register(e *engine.Engine) error {
	g.e = e
	if err := e.RegisterFunction("greet::hello", "Greets {name} and tells the greet:hello triggers.", engine.HandlerFunc(g.hello)); err != nil {
		return err
	}
	return e.RegisterTriggerType("greet:hello", "Runs a function for every greeting (config: condition_function_id?).", greetTriggers{g})
}

func (g *greeter) Close() error {
	g.subs.Close()
	g.closed.Store(true)
	return nil
}

func (g *greeter) hello(_ context.Context, c engine.Call) ([]byte, error) {
	var in struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(c.Payload, &in); err != nil || in.Name == "" {
		return nil, engine.Errorf(codes.InvalidArgument, "greet::hello: want {name}")
	}
	out, _ := json.Marshal(map[string]string{"greeting": "hello, " + in.Name})
	for _, t := range g.subs.All() {
		var cfg struct {
			Condition string `json:"condition_function_id"`
		}
		_ = json.Unmarshal(t.Config, &cfg)
		g.subs.Go(func() {
			if ok, _ := g.e.Condition(context.Background(), t, cfg.Condition, engine.Call{Payload: c.Payload}); ok {
				_, _ = g.e.Fire(context.Background(), t, engine.Call{FunctionID: t.FunctionID, Payload: out})
			}
		})
	}
	return out, nil
}

type greetTriggers struct{ g *greeter }

func (p greetTriggers) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	var cfg struct {
		Condition string `json:"condition_function_id"`
	}
	if len(t.Config) > 0 && !bytes.Equal(t.Config, []byte("null")) {
		if err := json.Unmarshal(t.Config, &cfg); err != nil {
			return engine.Errorf(codes.InvalidArgument, "greet:hello trigger %q: %v", t.ID, err)
		}
	}
	if err := engine.ValidateCondition(cfg.Condition); err != nil {
		return err
	}
	return p.g.subs.Put(t.ID, t, func() {}, nil)
}

func (p greetTriggers) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	p.g.subs.Remove(t.ID)
	return nil
}

var grpcAddrRe = regexp.MustCompile(`grpc=(\S+)`)

// TestEighthModule serves an engine with one more module, wired in with
// one line, and reaches it from a worker: its function, its trigger type
// with a condition, and its Close when the engine stops.
func TestEighthModule(t *testing.T) {
	cfg, err := parseEngineConfig([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0",
		"--iii-addr", "off", "--nats-addr", "off", "--store", "memory", "--data-dir", t.TempDir(), "--log-level", "warn"}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	g := newGreeter()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	served := make(chan error, 1)
	go func() { served <- serveEngine(ctx, cfg, &stdout, &stderr, g) }()
	var addr string
	poll.CheckFor(t, 30*time.Second, poll.Holds("the start line", func() bool {
		m := grpcAddrRe.FindStringSubmatch(stdout.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}))

	w, err := trine.NewWorker(addr, trine.WithName("greeter-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	seen := make(chan string, 4)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.RegisterFunction(ctx, "app::seen", func(_ context.Context, p json.RawMessage) (any, error) {
		seen <- string(p)
		return nil, nil
	}))
	must(w.RegisterFunction(ctx, "app::only_bob", func(_ context.Context, p json.RawMessage) (any, error) {
		var in struct{ Name string }
		_ = json.Unmarshal(p, &in)
		return in.Name == "bob", nil
	}))
	must(w.Connect(ctx))
	must(w.RegisterTrigger(ctx, trine.Trigger{ID: "seen", Type: "greet:hello", FunctionID: "app::seen", Config: map[string]string{"condition_function_id": "app::only_bob"}}))

	for _, name := range []string{"alice", "bob"} {
		out, err := w.Trigger(ctx, "greet::hello", map[string]string{"name": name})
		if want := `{"greeting":"hello, ` + name + `"}`; err != nil || string(out) != want {
			t.Fatalf("greet::hello(%s) = %s, %v; want %s", name, out, err, want)
		}
	}
	select {
	case p := <-seen:
		if p != `{"greeting":"hello, bob"}` {
			t.Fatalf("app::seen got %s, want bob's greeting only", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the greet:hello trigger never ran")
	}
	if _, err := w.Trigger(ctx, "greet::hello", map[string]string{}); !errors.Is(err, trine.ErrInvalidArgument) {
		t.Fatalf("greet::hello({}) = %v, want invalid argument", err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("serveEngine = %v", err)
	}
	if !g.closed.Load() {
		t.Fatal("the module was not closed when the engine stopped")
	}
	select {
	case p := <-seen:
		t.Fatalf("app::seen got %s, want nothing for alice", p)
	default:
	}
}
