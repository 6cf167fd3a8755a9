package store_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
)

func input(t *testing.T, payload string) engine.Input {
	t.Helper()
	in, err := engine.ReadInput(engine.Call{FunctionID: "x::update", Payload: json.RawMessage(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestReadOps: ops is required, and what does not decode is refused as
// invalid_argument naming the function.
func TestReadOps(t *testing.T) {
	ops, err := store.ReadOps("x::update", input(t, `{"ops":[{"type":"set","path":"a","value":1}]}`))
	if err != nil || len(ops) != 1 {
		t.Fatalf("ReadOps = %v, %v", ops, err)
	}
	for _, payload := range []string{`{}`, `{"ops":"no"}`} {
		_, err := store.ReadOps("x::update", input(t, payload))
		if !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("ReadOps(%s) = %v, want invalid_argument", payload, err)
		}
	}
}

// TestMarshalValues: an unpaged list is its items' values, in order.
func TestMarshalValues(t *testing.T) {
	b, err := store.MarshalValues([]store.Item{{ID: "a", Value: json.RawMessage(`1`)}, {ID: "b", Value: json.RawMessage(`{"x":2}`)}})
	if err != nil || string(b) != `[1,{"x":2}]` {
		t.Fatalf("MarshalValues = %s, %v", b, err)
	}
	if b, err := store.MarshalValues(nil); err != nil || string(b) != `[]` {
		t.Fatalf("MarshalValues(nil) = %s, %v", b, err)
	}
}
