package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	trine "github.com/trinehq/trine/worker-sdk"
)

// exampleEngine runs an engine on a loopback port, as `trine engine` does,
// and returns its address and a stop function.
func exampleEngine() (string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	r, err := enginetest.Serve(lis, engine.Config{}, grpcserver.Config{})
	if err != nil {
		panic(err)
	}
	return r.Addr, r.Stop
}

// exampleWorker connects a worker to an engine of its own; stop closes
// both.
func exampleWorker() (w *trine.Worker, stop func()) {
	addr, stopEngine := exampleEngine()
	w, _ = trine.NewWorker(addr)
	_ = w.Connect(context.Background())
	return w, func() { _ = w.Close(); stopEngine() }
}

type MulIn struct{ A, B int }
type MulOut struct {
	Product int `json:"product"`
}

// A worker registers functions and calls them through the engine.
func Example() {
	addr, stop := exampleEngine() // usually "127.0.0.1:49134", from `trine engine`
	defer stop()

	w, err := trine.NewWorker(addr, trine.WithName("math"))
	if err != nil {
		fmt.Println("worker:", err)
		return
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		fmt.Println("connect:", err)
		return
	}

	_ = w.RegisterFunction(ctx, "math::add", func(ctx context.Context, in json.RawMessage) (any, error) {
		var p struct{ A, B int }
		if err := json.Unmarshal(in, &p); err != nil {
			return nil, &trine.Error{Code: trine.CodeInvalidArgument, Message: err.Error()}
		}
		return p.A + p.B, nil
	})
	_ = trine.RegisterFunctionTyped(ctx, w, "math::mul", func(ctx context.Context, in MulIn) (MulOut, error) {
		return MulOut{Product: in.A * in.B}, nil
	})

	sum, _ := w.Trigger(ctx, "math::add", map[string]any{"a": 1, "b": 2})
	product, _ := w.Trigger(ctx, "math::mul", MulIn{A: 6, B: 7})
	fmt.Println(string(sum), string(product))

	_, err = w.Trigger(ctx, "math::div", nil)
	fmt.Println(errors.Is(err, trine.ErrFunctionNotFound))
	// Output:
	// 3 {"product":42}
	// true
}

// Errors carry a stable code that errors.As exposes.
func ExampleError() {
	w, stop := exampleWorker()
	defer stop()
	ctx := context.Background()
	_ = w.RegisterFunction(ctx, "billing::charge", func(context.Context, json.RawMessage) (any, error) {
		return nil, &trine.Error{Code: trine.CodeForbidden, Message: "card declined"}
	})

	_, err := w.Trigger(ctx, "billing::charge", map[string]int{"cents": 500})
	var te *trine.Error
	if errors.As(err, &te) {
		fmt.Println(te.Code, te.Message)
	}
	// Output: forbidden card declined
}

// With WithTypedFormats, the engine holds callers to a typed function's
// Go types: a payload that does not fit is refused before the handler
// runs, with the JSON pointer and the rule.
func ExampleWithTypedFormats() {
	w, stop := exampleWorker()
	defer stop()
	ctx := context.Background()
	_ = trine.RegisterFunctionTyped(ctx, w, "math::mul", func(_ context.Context, in MulIn) (MulOut, error) {
		return MulOut{Product: in.A * in.B}, nil
	}, trine.WithTypedFormats())

	_, err := w.Trigger(ctx, "math::mul", map[string]any{"A": 6, "B": "seven"})
	var te *trine.Error
	if errors.As(err, &te) {
		fmt.Println(te.Code, te.Message)
	}
	// Output: invalid_argument payload for "math::mul" breaks its request_format: /B: expected integer, got string
}

// Fire and forget: TriggerVoid returns once the call is sent.
func ExampleWorker_TriggerVoid() {
	w, stop := exampleWorker()
	defer stop()
	ctx := context.Background()
	done := make(chan string, 1)
	_ = w.RegisterFunction(ctx, "audit::log", func(_ context.Context, in json.RawMessage) (any, error) {
		done <- string(in)
		return nil, nil
	})

	_ = w.TriggerVoid(ctx, "audit::log", "user signed in")
	fmt.Println(<-done)
	// Output: "user signed in"
}

// A worker can provide a trigger type; other workers bind functions to it.
func ExampleWorker_RegisterTriggerType() {
	w, stop := exampleWorker()
	defer stop()

	_ = w.RegisterTriggerType(context.Background(), "cron", "runs a function on a schedule", cronProvider{})
	err := w.RegisterTrigger(context.Background(), trine.Trigger{ID: "nightly", Type: "cron", FunctionID: "reports::build", Config: map[string]string{"expression": "0 3 * * *"}})
	fmt.Println(err)
	err = w.RegisterTrigger(context.Background(), trine.Trigger{ID: "broken", Type: "cron", FunctionID: "reports::build", Config: map[string]string{}})
	fmt.Println(errors.Is(err, trine.ErrInvalidArgument))
	// Output:
	// <nil>
	// true
}

type cronProvider struct{}

func (cronProvider) RegisterTrigger(_ context.Context, t trine.Trigger) error {
	var cfg struct{ Expression string }
	if err := json.Unmarshal(t.Config.(json.RawMessage), &cfg); err != nil || cfg.Expression == "" {
		return errors.New("config needs an expression")
	}
	return nil // start firing t.FunctionID here
}

func (cronProvider) UnregisterTrigger(context.Context, trine.Trigger) error { return nil }
