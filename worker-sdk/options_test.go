package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestNilAndEmptyOptions: a nil option is ignored wherever options are
// taken, and an option that holds none (a struct embedding a nil option)
// is refused with invalid_argument before anything is sent, never a
// panic.
func TestNilAndEmptyOptions(t *testing.T) {
	srv := startEngine(t)
	w := connect(t, srv.Addr, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var h trine.Handler = func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	if err := w.RegisterFunction(ctx, "opts::f", h, nil); err != nil {
		t.Fatalf("RegisterFunction with a nil option = %v", err)
	}
	if _, err := w.Trigger(ctx, "opts::f", nil); err != nil {
		t.Fatal(err)
	}
	// The stream and state functions are not served here: a nil option
	// gets as far as the engine, which answers function_not_found.
	s, st := trine.NewStream[int](w, "s"), trine.NewState[int](w, "scope")
	_, err := s.Set(ctx, "g", "i", 1, nil)
	wantCode(t, err, trine.CodeFunctionNotFound)
	_, err = s.List(ctx, "g", nil)
	wantCode(t, err, trine.CodeFunctionNotFound)
	_, err = s.Send(ctx, "g", "t", 1, nil)
	wantCode(t, err, trine.CodeFunctionNotFound)

	type option struct{ trine.Option }
	type functionOption struct{ trine.FunctionOption }
	type writeOption struct{ trine.WriteOption }
	type listOption struct{ trine.ListOption }
	type sendOption struct{ trine.SendOption }
	type subscribeOption struct{ trine.SubscribeOption }
	type defineOption struct{ trine.DefineOption }
	for name, call := range map[string]func() error{
		"NewWorker": func() error { _, err := trine.NewWorker(srv.Addr, option{}); return err },
		"RegisterWorker": func() error {
			w := trine.RegisterWorker(srv.Addr, option{})
			defer w.Close()
			return w.Connect(ctx)
		},
		"RegisterFunction": func() error { return w.RegisterFunction(ctx, "opts::g", h, functionOption{}) },
		"Stream.Set":       func() error { _, err := s.Set(ctx, "g", "i", 1, writeOption{}); return err },
		"Stream.Update":    func() error { _, err := s.Update(ctx, "g", "i", nil, writeOption{}); return err },
		"Stream.Delete":    func() error { _, _, err := s.Delete(ctx, "g", "i", writeOption{}); return err },
		"Stream.List":      func() error { _, err := s.List(ctx, "g", listOption{}); return err },
		"Stream.Send":      func() error { _, err := s.Send(ctx, "g", "t", 1, sendOption{}); return err },
		"State.Set":        func() error { _, err := st.Set(ctx, "k", 1, writeOption{}); return err },
		"State.Update":     func() error { _, err := st.Update(ctx, "k", nil, writeOption{}); return err },
		"State.Delete":     func() error { _, _, err := st.Delete(ctx, "k", writeOption{}); return err },
		"State.List":       func() error { _, err := st.List(ctx, listOption{}); return err },
		"Subscribe": func() error {
			_, err := trine.Subscribe(ctx, "http://127.0.0.1:1", "s", "g", subscribeOption{})
			return err
		},
		"DefineStream": func() error { _, err := trine.DefineStream[int](ctx, w, "d", defineOption{}); return err },
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = errors.New("panic")
						t.Errorf("%s panicked: %v", name, p)
					}
				}()
				err = call()
			}()
			wantCode(t, err, trine.CodeInvalidArgument)
		})
	}
}
