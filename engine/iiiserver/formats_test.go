package iiiserver_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
)

// rustAddInput is request_format as iii's Rust SDK sends it: schemars
// 0.8 with SchemaSettings::draft07, definitions and integer formats.
const rustAddInput = `{"$schema":"http://json-schema.org/draft-07/schema#","title":"AddInput","type":"object","required":["a","b"],
	"properties":{"a":{"type":"integer","format":"int32"},"b":{"$ref":"#/definitions/Operand"},"note":{"type":["string","null"]}},
	"definitions":{"Operand":{"type":"integer","format":"uint32","minimum":0.0}}}`

// pythonFormat is iii's own parameter format (iii's Python
// RegisterFunctionFormat, Node's type "map"), which is not JSON Schema.
const pythonFormat = `{"name":"input","type":"object","description":null,"required":false,"items":null,
	"body":[{"name":"a","type":"number","required":true},{"name":"tags","type":"map","required":false}]}`

// TestIIIFormatsInOtherDrafts: an iii worker's formats in draft-07 (iii's
// Rust SDK) are compiled under draft-07 and enforced; formats in iii's own
// parameter format are kept for engine::functions::info without being
// checked.
func TestIIIFormatsInOtherDrafts(t *testing.T) {
	t.Parallel()
	s := start(t, iiiserver.Config{})
	c := s.dial(t)
	c.send(map[string]any{"type": "registerfunction", "id": "rust::add", "request_format": raw(rustAddInput),
		"response_format": raw(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"integer","format":"int64"}`)})
	c.send(map[string]any{"type": "registerfunction", "id": "py::add", "request_format": raw(pythonFormat)})
	c.hello("formats")
	s.waitFunction(t, "rust::add", true)
	s.waitFunction(t, "py::add", true)
	if info, _ := s.e.FunctionInfo("rust::add"); !info.Validated {
		t.Fatalf("the draft-07 formats are not checked: %+v", info)
	}
	if info, _ := s.e.FunctionInfo("py::add"); info.Validated || !strings.Contains(string(info.RequestFormat), `"body"`) {
		t.Fatalf("iii's parameter format: %+v", info)
	}

	// A payload that breaks the draft-07 format never reaches the worker.
	for payload, want := range map[string]string{
		`{"a":1,"b":-1}`:  "/b: minimum",
		`{"a":"x","b":1}`: "/a: expected integer, got string",
		`{"a":1}`:         "/b: required",
	} {
		_, err := s.e.Trigger(context.Background(), engine.Call{FunctionID: "rust::add", Payload: []byte(payload)})
		if e := engine.AsError(err); err == nil || e.Code != codes.InvalidArgument || !strings.Contains(e.Message, want) {
			t.Fatalf("%s: %v, want invalid_argument saying %q", payload, err, want)
		}
	}
	// A good one does, and its result is checked too.
	for _, tc := range []struct {
		result any
		code   engine.Code
	}{{3, ""}, {"three", codes.HandlerError}} {
		done := make(chan error, 1)
		go func() {
			_, err := s.e.Trigger(context.Background(), engine.Call{FunctionID: "rust::add", Payload: []byte(`{"a":1,"b":2,"note":null}`)})
			done <- err
		}()
		inv := c.expect("invokefunction")
		c.send(map[string]any{"type": "invocationresult", "invocation_id": inv["invocation_id"], "function_id": "rust::add", "result": tc.result})
		if err := <-done; tc.code == "" && err != nil || tc.code != "" && engine.AsError(err).Code != tc.code {
			t.Fatalf("result %v: %v, want %q", tc.result, err, tc.code)
		}
	}
	// iii's parameter format checks nothing.
	done := make(chan error, 1)
	go func() {
		_, err := s.e.Trigger(context.Background(), engine.Call{FunctionID: "py::add", Payload: []byte(`"anything"`)})
		done <- err
	}()
	inv := c.expect("invokefunction")
	c.send(map[string]any{"type": "invocationresult", "invocation_id": inv["invocation_id"], "function_id": "py::add", "result": 1})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.quiet()
}

// raw is JSON source sent as is.
func raw(s string) json.RawMessage { return json.RawMessage(s) }
