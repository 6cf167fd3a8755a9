package trine_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

type addIn struct {
	A float64 `json:"a"`
	B float64 `json:"b"`
}

type addOut struct {
	Sum float64 `json:"sum"`
}

// TestFunctionFormats: formats attached from Go (derived from a typed
// handler's types with WithTypedFormats, or given as schemas) are
// enforced by the engine: an invalid payload is refused with its pointer
// and never reaches the handler, an invalid result is a handler_error,
// WithoutValidation lets both through, engine::functions::info shows
// them, and a schema that does not compile refuses the registration.
func TestFunctionFormats(t *testing.T) {
	s := startEngine(t)
	w := connect(t, s.Addr)
	caller := connect(t, s.Addr)
	ctx := t.Context()

	var calls atomic.Int32
	if err := trine.RegisterFunctionTyped(ctx, w, "math::add", func(_ context.Context, in addIn) (addOut, error) {
		calls.Add(1)
		return addOut{Sum: in.A + in.B}, nil
	}, trine.WithTypedFormats()); err != nil {
		t.Fatal(err)
	}
	_, err := trine.Call[addOut](ctx, caller, "math::add", map[string]any{"a": 1, "b": "2"})
	wantCode(t, err, trine.CodeInvalidArgument)
	if !strings.Contains(err.Error(), "/b: expected number, got string") {
		t.Errorf("refusal %q lacks the pointer and rule", err)
	}
	_, err = trine.Call[addOut](ctx, caller, "math::add", map[string]any{"a": 1, "b": 2, "c": 3})
	wantCode(t, err, trine.CodeInvalidArgument)
	if n := calls.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for refused payloads", n)
	}
	if out, err := trine.Call[addOut](ctx, caller, "math::add", addIn{A: 1, B: 2}); err != nil || out.Sum != 3 {
		t.Fatalf("valid call = %+v, %v", out, err)
	}
	info, err := trine.Call[map[string]json.RawMessage](ctx, caller, "engine::functions::info", map[string]string{"function_id": "math::add"})
	if err != nil {
		t.Fatal(err)
	}
	wantIn, _ := trine.SchemaFor[addIn]()
	wantOut, _ := trine.SchemaFor[addOut]()
	if string(info["request_format"]) != string(wantIn) || string(info["response_format"]) != string(wantOut) || string(info["validated"]) != "true" {
		t.Errorf("info = %s %s %s", info["request_format"], info["response_format"], info["validated"])
	}

	bad := func(context.Context, json.RawMessage) (any, error) { return map[string]string{"sum": "three"}, nil }
	if err := w.RegisterFunction(ctx, "math::bad", bad, trine.WithResponseFormat(wantOut)); err != nil {
		t.Fatal(err)
	}
	_, err = trine.Call[json.RawMessage](ctx, caller, "math::bad", nil)
	wantCode(t, err, trine.CodeHandlerError)
	if !strings.Contains(err.Error(), "/sum: expected number, got string") {
		t.Errorf("refused result %q lacks the rule", err)
	}

	if err := w.RegisterFunction(ctx, "math::loose", bad, trine.WithRequestFormat(wantIn), trine.WithResponseFormat(wantOut), trine.WithoutValidation()); err != nil {
		t.Fatal(err)
	}
	if out, err := trine.Call[json.RawMessage](ctx, caller, "math::loose", "anything"); err != nil || string(out) != `{"sum":"three"}` {
		t.Fatalf("opted out = %s, %v", out, err)
	}
	info, err = trine.Call[map[string]json.RawMessage](ctx, caller, "engine::functions::info", map[string]string{"function_id": "math::loose"})
	if err != nil || string(info["request_format"]) != string(wantIn) || info["validated"] != nil {
		t.Errorf("opted-out info = %v, %v", info, err)
	}

	for name, schema := range map[string]string{
		"no compile": `{"type":"nope"}`,
		"regex":      `{"pattern":"` + strings.Repeat("a{1000}", 100) + `"}`,
		"recursion":  `{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`,
	} {
		start := time.Now()
		err := w.RegisterFunction(ctx, "math::broken", bad, trine.WithRequestFormat(schema))
		wantCode(t, err, trine.CodeInvalidArgument)
		if !strings.Contains(err.Error(), "request_format: schema refused") || time.Since(start) > 5*time.Second {
			t.Errorf("%s: %v after %v", name, err, time.Since(start))
		}
	}
	_, err = trine.Call[json.RawMessage](ctx, caller, "math::broken", nil)
	wantCode(t, err, trine.CodeFunctionNotFound)

	err = w.RegisterFunction(ctx, "math::untyped", bad, trine.WithTypedFormats())
	wantCode(t, err, trine.CodeInvalidArgument)
}
