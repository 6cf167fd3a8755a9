package iiiserver

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// The hand-written encodings of invokefunction and invocationresult are
// json.Marshal's, byte for byte, whatever the strings and raw JSON hold.

var encodeStrings = []string{"", "bench::echo", "a b", `q"uote`, `back\slash`, "<a>&", "tab\there", "\x00\x1f\x7f",
	"é ü 世界", "line\u2028sep\u2029", "bad\xffutf8", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}

var encodeRaws = []string{`"x"`, `null`, `{"a":1,"b":[true,false,null]}`, `{ "a" : 1 }`, "[1,\n2]", `"<script>"`, `{"h":"a&b"}`,
	"\"\u2028\"", `"é"`, `"\u00e9\ud83d\ude00"`, `1e10`, `-0.5`, `{"a":"b c"}`, `"bad` + "\xff" + `"`, `{`, `nul`, ` 1 `}

func TestAppendJSONIsMarshal(t *testing.T) {
	check := func(name string, v any, m interface {
		appendJSON([]byte) ([]byte, error)
	}) {
		t.Helper()
		want, werr := json.Marshal(v)
		got, gerr := m.appendJSON([]byte("prefix"))
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("%s %+v: error %v, json.Marshal's %v", name, v, gerr, werr)
		}
		if werr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("%s %+v:\n got %s\nwant prefix%s", name, v, got, want)
		}
	}
	for _, s := range encodeStrings {
		for _, raw := range encodeRaws {
			inv := invokeFunction{Type: typeInvokeFunction, InvocationID: s, FunctionID: s, Data: json.RawMessage(raw),
				Traceparent: s, Baggage: s, Metadata: json.RawMessage(raw)}
			check("invokefunction", inv, &inv)
			inv.Traceparent, inv.Baggage, inv.Metadata = "", "", nil
			check("invokefunction", inv, &inv)
			res := invocationResult{Type: typeInvocationResult, InvocationID: s, FunctionID: s, Result: json.RawMessage(raw)}
			check("invocationresult", res, &res)
			res.Result, res.Error = nil, &errorBody{Code: s, Message: s, Stacktrace: s}
			check("invocationresult", res, &res)
			res.Error.Stacktrace = ""
			check("invocationresult", res, &res)
		}
	}
}

func FuzzAppendJSONIsMarshal(f *testing.F) {
	for i, s := range encodeStrings {
		f.Add(s, encodeRaws[i%len(encodeRaws)])
	}
	f.Fuzz(func(t *testing.T, s, raw string) {
		inv := invokeFunction{Type: typeInvokeFunction, InvocationID: s, FunctionID: s, Data: json.RawMessage(raw), Baggage: s}
		want, werr := json.Marshal(inv)
		got, gerr := inv.appendJSON(nil)
		if (werr != nil) != (gerr != nil) || werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendJSON %q, %v; json.Marshal %q, %v", got, gerr, want, werr)
		}
		res := invocationResult{Type: typeInvocationResult, InvocationID: s, Result: json.RawMessage(raw), Error: &errorBody{Message: s}}
		want, werr = json.Marshal(res)
		got, gerr = res.appendJSON(nil)
		if (werr != nil) != (gerr != nil) || werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendJSON %q, %v; json.Marshal %q, %v", got, gerr, want, werr)
		}
	})
}

// decodeCall reads every message as json.Unmarshal does, or leaves it to
// it.

var decodeMessages = []string{
	`{"type":"invokefunction","invocation_id":"7","function_id":"bench::echo","data":"xx"}`,
	` { "type" : "invocationresult" , "invocation_id" : "7" , "function_id" : "f" , "result" : { "a" : [1, 2] } } `,
	`{"type":"invocationresult","invocation_id":"7","function_id":"f","result":null}`,
	`{"type":"invokefunction","invocation_id":null,"function_id":"f","data":{}}`,
	`{"type":"invokefunction","function_id":"f","data":[],"traceparent":"00-a-b-01","baggage":"k=v","metadata":{"m":true}}`,
	`{"type":"invokefunction","function_id":"f","data":-1.5e3}`,
	`{"type":"invokefunction","function_id":"f","data":"a\"b\\c]}"}`,
	`{"type":"invokefunction","function_id":"f","data":{"s":"}]{["}}`,
	`{"type":"invokefunction","function_id":"f","data":"\ud800"}`,
	`{"type":"invokefunction","function_id":"f","data":tru}`,
	`{"type":"invokefunction","function_id":"f","data":[1,}`,
	`{"type":"invokefunction","function_id":"f","data":1 2}`,
	`{"type":"invokefunction","function_id":"f","data":`,
	`{"type":"invokefunction","type":"ping"}`,
	`{"Type":"ping"}`,
	`{"type":"p\u0069ng"}`,
	`{"type":"é"}`,
	`{"type":5}`,
	`{"type":null}`,
	`{"type":"ping",}`,
	`{"type":"ping"}x`,
	`{"type":"ping"}{}`,
	`{}`,
	` {} `,
	`[]`,
	`"x"`,
	`{"type":"invokefunction","action":{"type":"void"},"data":1}`,
	`{"type":"invocationresult","invocation_id":"1","error":{"code":"E","message":"m"}}`,
	`{"type":"invocationresult","invocation_id":"1","result":"` + "\xff" + `"}`,
	"{\"type\":\"ping\"\x00}",
	`{"type":"ping" "id":"x"}`,
	`{"type" "ping"}`,
	`{"invocation_id":"1","invocation_id":"2","data":1,"data":[2]}`,
}

func TestDecodeInboundIsUnmarshal(t *testing.T) {
	for _, msg := range decodeMessages {
		checkDecode(t, []byte(msg))
	}
}

func FuzzDecodeInboundIsUnmarshal(f *testing.F) {
	for _, msg := range decodeMessages {
		f.Add([]byte(msg))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// decodeInbound is how the connection reads a message: decodeCall, else
// json.Unmarshal.
func decodeInbound(b []byte, m *inbound) error {
	if decodeCall(b, m) {
		return nil
	}
	*m = inbound{}
	return json.Unmarshal(b, m)
}

func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	var got, want inbound
	gerr := decodeInbound(b, &got)
	werr := json.Unmarshal(b, &want)
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		t.Fatalf("%q: error %v, json.Unmarshal's %v", b, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
	}
}
