package engine_test

import (
	"encoding/json"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// TestInfoFunctions: the four *::info built-ins describe one thing each,
// with the schemas a registration carried, and name the missing ones.
func TestInfoFunctions(t *testing.T) {
	e := newEngine(t, engine.Config{})
	s, _ := attach(t, e, "owner")
	spec := engine.FunctionSpec{Description: "adds", Metadata: json.RawMessage(`{"team":"a"}`),
		RequestFormat:  json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"}}}`),
		ResponseFormat: json.RawMessage(`{"type":"number"}`)}
	if err := s.RegisterFunctionSpec("math::add", spec); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterFunctionSpec("math::bare", engine.FunctionSpec{RequestFormat: json.RawMessage(`null`), Metadata: json.RawMessage(`{not json`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterTriggerType("custom::tick", "ticks"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "t1", Type: engine.TriggerWorkersAvailable, FunctionID: "math::add", Config: json.RawMessage(`{"every":1}`)}); err != nil {
		t.Fatal(err)
	}
	call := func(fn, in string) (map[string]any, error) {
		out, err := e.Trigger(t.Context(), engine.Call{FunctionID: fn, Payload: []byte(in)})
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s: %s: %v", fn, out, err)
		}
		return m, nil
	}
	f, err := call(engine.FnFunctionsInfo, `{"function_id":"math::add"}`)
	if err != nil {
		t.Fatal(err)
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for k, want := range map[string]string{
		"function_id": `"math::add"`, "description": `"adds"`, "worker_name": `"owner"`, "metadata": `{"team":"a"}`,
		"request_format": `{"properties":{"a":{"type":"number"}},"type":"object"}`, "response_format": `{"type":"number"}`,
		"request_schema": `{"properties":{"a":{"type":"number"}},"type":"object"}`, "response_schema": `{"type":"number"}`,
		"builtin": `false`, "replicas": `1`,
	} {
		if got := js(f[k]); got != want {
			t.Errorf("functions::info %s = %s, want %s", k, got, want)
		}
	}
	if rt := js(f["registered_triggers"]); rt != `[{"config":{"every":1},"config_summary":"{\"every\":1}","function_id":"math::add","id":"t1","trigger_type":"engine::workers-available","worker_name":"owner"}]` {
		t.Errorf("functions::info registered_triggers = %s", rt)
	}
	f, _ = call(engine.FnFunctionsInfo, `{"function_id":"math::bare"}`)
	if js(f["request_format"]) != "null" || js(f["metadata"]) != "null" {
		t.Errorf("null schemas and invalid metadata are dropped: %v", f)
	}
	f, _ = call(engine.FnFunctionsInfo, `{"function_id":"engine::health::check"}`)
	if f["builtin"] != true || f["worker_name"] != "engine" {
		t.Errorf("built-in info %v", f)
	}

	w, err := call(engine.FnWorkersInfo, `{"worker_id":"`+s.ID()+`"}`)
	if err != nil || w["name"] != "owner" || w["id"] != s.ID() {
		t.Errorf("workers::info %v %v", w, err)
	}
	tt, err := call(engine.FnTriggersInfo, `{"trigger_type":"custom::tick"}`)
	if err != nil || tt["id"] != "custom::tick" || tt["worker_name"] != "owner" || tt["namespace"] != "default" || tt["trigger_count"] != 0.0 || len(tt["registered_triggers"].([]any)) != 0 {
		t.Errorf("triggers::info %v %v", tt, err)
	}
	tt, err = call(engine.FnTriggersInfo, `{"trigger_type":"`+engine.TriggerWorkersAvailable+`"}`)
	if err != nil || tt["worker_name"] != "engine" || tt["trigger_count"] != 1.0 || len(tt["registered_triggers"].([]any)) != 1 {
		t.Errorf("triggers::info of a built-in type %v %v", tt, err)
	}
	rt, err := call(engine.FnRegisteredTriggersInfo, `{"trigger_id":"t1"}`)
	if err != nil || rt["id"] != "t1" || rt["trigger_type"] != engine.TriggerWorkersAvailable || rt["function_id"] != "math::add" || rt["status"] != "active" || js(rt["config"]) != `{"every":1}` {
		t.Errorf("registered-triggers::info %v %v", rt, err)
	}
	for _, c := range []struct {
		fn, in string
		code   engine.Code
	}{
		{engine.FnFunctionsInfo, `{"function_id":"nope"}`, codes.FunctionNotFound},
		{engine.FnFunctionsInfo, `{}`, codes.FunctionNotFound},
		{engine.FnWorkersInfo, `{"worker_id":"nope"}`, codes.InvalidArgument},
		{engine.FnTriggersInfo, `{"trigger_type":"nope"}`, codes.TriggerTypeNotFound},
		{engine.FnRegisteredTriggersInfo, `{"trigger_id":"nope"}`, codes.TriggerNotFound},
		{engine.FnFunctionsInfo, `[1]`, codes.InvalidArgument},
	} {
		if _, err := call(c.fn, c.in); code(err) != c.code {
			t.Errorf("%s %s: %v, want %s", c.fn, c.in, err, c.code)
		}
	}
}
