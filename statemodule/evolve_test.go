package statemodule_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/statemodule"
)

// A scope's new version is checked against the values it holds: refused
// with the keys that fail, or passed once migrate converted them.
func TestScopeEvolveChecksValues(t *testing.T) {
	v := start(t, statemodule.Config{})
	def := func(version, schema, extra string) (string, error) {
		return v.call("state::define", `{"scope":"users","version":`+version+`,"compatibility":"NONE","item_schema":`+schema+extra+`}`)
	}
	v.must(t, "state::define", `{"scope":"users","version":1,"item_schema":{"type":"object"}}`)
	v.must(t, "state::set", `{"scope":"users","key":"ann","value":{"age":"41"}}`)
	v.must(t, "state::set", `{"scope":"users","key":"bob","value":{"age":7}}`)
	ageInt := `{"type":"object","properties":{"age":{"type":"integer"}},"required":["age"]}`
	_, err := def("2", ageInt, "")
	if e := engine.AsError(err); err == nil || e.Code != codes.Conflict || !strings.Contains(err.Error(), `1 stored items fail version 2: {"key":"ann","scope":"users"}; first: /age: expected integer, got string`) {
		t.Fatalf("got %v", err)
	}
	if err := v.e.RegisterFunction("users::migrate", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var in struct {
			Key  string `json:"key"`
			Data struct {
				Age json.Number `json:"age"`
			} `json:"data"`
		}
		if err := json.Unmarshal(c.Payload, &in); err != nil {
			return nil, err
		}
		return []byte(`{"age":` + in.Data.Age.String() + `}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	out, err := def("2", ageInt, `,"migrate":"users::migrate"`)
	if err != nil || !strings.Contains(out, `"migrated":1`) {
		t.Fatalf("migrate: %s, %v", out, err)
	}
	if got := v.must(t, "state::get", `{"scope":"users","key":"ann"}`); got != `{"age":41}` {
		t.Fatalf("ann: %s", got)
	}
}
