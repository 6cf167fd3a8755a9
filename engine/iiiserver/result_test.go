package iiiserver_test

import (
	"context"
	"testing"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
)

// TestNullResultIsOmitted: iii answers a call whose result is null (a
// state::get of a missing key, a handler returning nothing) with no
// result field, which its SDKs resolve as undefined; iii's own suites
// check that. Any other result, false and 0 included, is sent.
func TestNullResultIsOmitted(t *testing.T) {
	t.Parallel()
	s := start(t, iiiserver.Config{})
	for id, out := range map[string]string{"t::nothing": "", "t::null": " null ", "t::false": "false", "t::zero": "0"} {
		if err := s.e.RegisterFunction(id, "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
			return []byte(out), nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	c := s.dial(t)
	c.hello("null-results")
	for id, want := range map[string]any{"t::nothing": nil, "t::null": nil, "t::false": false, "t::zero": 0.0} {
		c.send(map[string]any{"type": "invokefunction", "invocation_id": "i", "function_id": id, "data": nil})
		r := c.expect("invocationresult")
		got, ok := r["result"]
		if _, hasErr := r["error"]; hasErr || ok != (want != nil) || got != want {
			t.Errorf("%s answered %v, want result %v (absent when null)", id, r, want)
		}
	}
}
