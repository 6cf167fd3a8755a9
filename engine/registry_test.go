package engine_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/trinehq/trine/engine"
)

// TestRegisterFunctionsInOrder: RegisterFunctions registers each function
// as RegisterFunction does and stops at the first that is refused.
func TestRegisterFunctionsInOrder(t *testing.T) {
	e := newEngine(t, engine.Config{})
	h := func(context.Context, engine.Call) ([]byte, error) { return []byte(`1`), nil }
	if err := e.RegisterFunctions([]engine.Function{{ID: "a::one", Description: "one", Handle: h}, {ID: "a::two", Handle: h}}); err != nil {
		t.Fatal(err)
	}
	err := e.RegisterFunctions([]engine.Function{{ID: "b::one", Handle: h}, {ID: "a::one", Handle: h}, {ID: "b::three", Handle: h}})
	if !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("registering a::one twice: %v", err)
	}
	var ids []string
	for _, f := range e.Functions() {
		ids = append(ids, f.FunctionID)
		if f.FunctionID == "a::one" && f.Description != "one" {
			t.Errorf("a::one described as %q", f.Description)
		}
	}
	if want := []string{"a::one", "a::two", "b::one"}; !slices.Equal(slices.DeleteFunc(ids, func(id string) bool { return len(id) < 3 || id[1] != ':' }), want) {
		t.Fatalf("registered %v, want %v", ids, want)
	}
	out, err := e.Trigger(t.Context(), engine.Call{FunctionID: "a::two"})
	if err != nil || string(out) != "1" {
		t.Fatalf("a::two = %s, %v", out, err)
	}
}
