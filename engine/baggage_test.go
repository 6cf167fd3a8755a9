package engine_test

import (
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// TestBaggageFunctions: engine::baggage::* read the baggage their own call
// carries; set answers the header to send on; bad baggage is refused.
func TestBaggageFunctions(t *testing.T) {
	e := newEngine(t, engine.Config{})
	call := func(fn, in, bag string) (string, error) {
		out, err := e.Trigger(t.Context(), engine.Call{FunctionID: fn, Payload: []byte(in), Baggage: bag})
		return string(out), err
	}
	const bag = "tenant=acme,variant=b%20two;p=1"
	for _, c := range []struct{ fn, in, bag, want string }{
		{engine.FnBaggageGet, `{"key":"tenant"}`, bag, `{"value":"acme"}`},
		{engine.FnBaggageGet, `{"key":"variant"}`, bag, `{"value":"b two"}`},
		{engine.FnBaggageGet, `{"key":"missing"}`, bag, `{"value":null}`},
		{engine.FnBaggageGet, `{"key":"tenant"}`, "", `{"value":null}`},
		{engine.FnBaggageGetAll, ``, bag, `{"baggage":{"tenant":"acme","variant":"b two"}}`},
		{engine.FnBaggageGetAll, `{}`, "", `{"baggage":{}}`},
	} {
		if got, err := call(c.fn, c.in, c.bag); err != nil || got != c.want {
			t.Errorf("%s %s with %q: %s %v, want %s", c.fn, c.in, c.bag, got, err, c.want)
		}
	}
	out, err := call(engine.FnBaggageSet, `{"key":"request","value":"r 1"}`, "tenant=acme")
	if err != nil || !strings.Contains(out, `"success":true`) || !strings.Contains(out, "tenant=acme") || !strings.Contains(out, "request=r%201") {
		t.Fatalf("set: %s %v", out, err)
	}
	for _, c := range []struct{ fn, in, bag string }{
		{engine.FnBaggageGet, `{}`, ""},
		{engine.FnBaggageSet, `{"key":"k"}`, ""},
		{engine.FnBaggageSet, "{\"key\":\"\xff\",\"value\":\"v\"}", ""},
		{engine.FnBaggageGetAll, `{}`, "=broken"},
		{engine.FnBaggageGetAll, `{}`, strings.Repeat("k=v,", 3000)},
		{engine.FnBaggageSet, `{"key":"k","value":"` + strings.Repeat("v", 9000) + `"}`, ""},
	} {
		if _, err := call(c.fn, c.in, c.bag); code(err) != codes.InvalidArgument {
			t.Errorf("%s %.40s with %.20q: %v, want invalid_argument", c.fn, c.in, c.bag, err)
		}
	}
}
