package iiiserver_test

import (
	"context"
	"errors"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
)

// TestErrorCodesInIIISpelling: iii workers see iii's spelling of the
// codes that iii spells differently (its typed errors compare on them),
// and the codes they send come back in Trine's, so that gRPC workers and
// errors.Is see one set; every other code, and a worker's own, passes
// unchanged.
func TestErrorCodesInIIISpelling(t *testing.T) {
	t.Parallel()
	s := start(t, iiiserver.Config{})
	for _, code := range []engine.Code{codes.Forbidden, codes.DeadlineExceeded, codes.WorkerDisconnected,
		codes.ValueTooLarge, codes.InvalidArgument, codes.EnqueueError, "MY_OWN"} {
		if err := s.e.RegisterFunction("t::fail::"+string(code), "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
			return nil, &engine.Error{Code: code, Message: "refused"}
		})); err != nil {
			t.Fatal(err)
		}
	}
	c := s.dial(t)
	c.send(map[string]any{"type": "registerfunction", "id": "w::fail"})
	c.hello("codes")
	s.waitFunction(t, "w::fail", true)

	for code, want := range map[engine.Code]string{
		codes.Forbidden:          "FORBIDDEN",
		codes.DeadlineExceeded:   "TIMEOUT",
		codes.WorkerDisconnected: "invocation_stopped",
		codes.ValueTooLarge:      "VALUE_TOO_LARGE",
		codes.InvalidArgument:    "invalid_argument",
		codes.EnqueueError:       "enqueue_error",
		"MY_OWN":                 "MY_OWN",
	} {
		c.send(map[string]any{"type": "invokefunction", "invocation_id": "i", "function_id": "t::fail::" + string(code), "data": nil})
		if e := c.expect("invocationresult")["error"].(map[string]any); e["code"] != want || e["message"] != "refused" {
			t.Errorf("%s reached the iii worker as %v, want code %s", code, e, want)
		}
	}
	c.send(map[string]any{"type": "invokefunction", "invocation_id": "nf", "function_id": "no::such", "data": nil})
	if e := c.expect("invocationresult")["error"].(map[string]any); e["code"] != "function_not_found" {
		t.Errorf("unknown function: %v", e)
	}

	// The worker's codes, as Trine's callers see them.
	for sent, want := range map[string]engine.Code{
		"FORBIDDEN":          codes.Forbidden,
		"TIMEOUT":            codes.DeadlineExceeded,
		"invocation_stopped": codes.WorkerDisconnected,
		"VALUE_TOO_LARGE":    codes.ValueTooLarge,
		"BOOM":               "BOOM",
	} {
		done := make(chan error, 1)
		go func() {
			_, err := s.e.Trigger(context.Background(), engine.Call{FunctionID: "w::fail"})
			done <- err
		}()
		inv := c.expect("invokefunction")
		c.send(map[string]any{"type": "invocationresult", "invocation_id": inv["invocation_id"], "function_id": "w::fail",
			"error": map[string]any{"code": sent, "message": "no"}})
		err := <-done
		if code(err) != want || !errors.Is(err, &engine.Error{Code: want}) {
			t.Errorf("worker's %s reached the caller as %v, want %s", sent, err, want)
		}
	}
}
