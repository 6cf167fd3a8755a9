package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

const (
	addRequest  = `{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}`
	addResponse = `{"type":"object","properties":{"sum":{"type":"number"}},"required":["sum"]}`
)

// noInvoke fails t if the peer was asked to run anything.
func noInvoke(t *testing.T, p *fakePeer, what string) {
	t.Helper()
	select {
	case inv := <-p.invokes:
		t.Fatalf("%s: the handler was called with %s", what, inv.Payload)
	default:
	}
}

// serveOnce serves the next invocation p receives with result.
func serveOnce(t *testing.T, s *engine.Session, p *fakePeer, result string) {
	t.Helper()
	go func() {
		select {
		case inv := <-p.invokes:
			s.Result(inv.InvocationID, []byte(result), nil)
		case <-t.Context().Done():
		}
	}()
}

// TestFunctionFormatsEnforced: a function registered with request_format
// and response_format has every payload checked before it is routed
// (invalid_argument naming the pointer and rule, the handler never
// called, void calls included) and every result before it is returned
// (handler_error naming the rule).
func TestFunctionFormatsEnforced(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	s, p := attach(t, e, "math")
	if err := s.RegisterFunctionSpec("math::add", engine.FunctionSpec{
		RequestFormat: json.RawMessage(addRequest), ResponseFormat: json.RawMessage(addResponse)}); err != nil {
		t.Fatal(err)
	}
	for payload, want := range map[string]string{
		`{"a":1,"b":"2"}`: `payload for "math::add" breaks its request_format: /b: expected number, got string`,
		`{"a":1}`:         `payload for "math::add" breaks its request_format: /b: required`,
		``:                `payload for "math::add" breaks its request_format: (root): expected object, got null`,
	} {
		_, err := e.Trigger(t.Context(), engine.Call{FunctionID: "math::add", Payload: []byte(payload)})
		if code(err) != codes.InvalidArgument || engine.AsError(err).Message != want || !errors.Is(err, engine.ErrRequestFormat) {
			t.Errorf("payload %s: %v, want invalid_argument %q", payload, err, want)
		}
		if err := e.TriggerVoid(engine.Call{FunctionID: "math::add", Payload: []byte(payload)}); code(err) != codes.InvalidArgument {
			t.Errorf("void payload %s: %v, want invalid_argument", payload, err)
		}
	}
	noInvoke(t, p, "invalid payloads")

	serveOnce(t, s, p, `{"sum":3}`)
	if out, err := e.Trigger(t.Context(), engine.Call{FunctionID: "math::add", Payload: []byte(`{"a":1,"b":2}`)}); err != nil || string(out) != `{"sum":3}` {
		t.Fatalf("valid call = %s, %v", out, err)
	}
	serveOnce(t, s, p, `{"sum":"3"}`)
	_, err := e.Trigger(t.Context(), engine.Call{FunctionID: "math::add", Payload: []byte(`{"a":1,"b":2}`)})
	if want := `result of "math::add" breaks its response_format: /sum: expected number, got string`; code(err) != codes.HandlerError || engine.AsError(err).Message != want {
		t.Fatalf("invalid result: %v, want handler_error %q", err, want)
	}
	serveOnce(t, s, p, ``)
	if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "math::add", Payload: []byte(`{"a":1,"b":2}`)}); code(err) != codes.HandlerError {
		t.Fatalf("an empty result is checked as null: %v", err)
	}
	if err := e.TriggerVoid(engine.Call{FunctionID: "math::add", Payload: []byte(`{"a":1,"b":2}`)}); err != nil {
		t.Fatal(err)
	}
	if inv := <-p.invokes; !inv.Void {
		t.Fatalf("valid void call = %+v", inv)
	}
}

// TestFunctionFormatsOptOut: NoValidation keeps the formats for
// engine::functions::info and checks nothing; such a registration's
// formats are stored without being compiled, so that a schema of another
// draft can be shown.
func TestFunctionFormatsOptOut(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	s, p := attach(t, e, "math")
	draft7 := `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}`
	if err := s.RegisterFunctionSpec("math::add", engine.FunctionSpec{NoValidation: true,
		RequestFormat: json.RawMessage(draft7), ResponseFormat: json.RawMessage(addResponse)}); err != nil {
		t.Fatal(err)
	}
	serveOnce(t, s, p, `{"sum":"x"}`)
	if out, err := e.Trigger(t.Context(), engine.Call{FunctionID: "math::add", Payload: []byte(`"anything"`)}); err != nil || string(out) != `{"sum":"x"}` {
		t.Fatalf("opted-out call = %s, %v", out, err)
	}
	info, ok := e.FunctionInfo("math::add")
	if !ok || string(info.RequestFormat) != draft7 || string(info.ResponseFormat) != addResponse || info.Validated {
		t.Fatalf("info = %+v", info)
	}
	if err := s.RegisterFunctionSpec("math::big", engine.FunctionSpec{NoValidation: true,
		RequestFormat: json.RawMessage(`"` + strings.Repeat("x", 300<<10) + `"`)}); code(err) != codes.InvalidArgument {
		t.Fatalf("an opted-out format over the size limit = %v, want invalid_argument", err)
	}
}

// TestFunctionFormatsRefusedAtRegistration: a format that does not
// compile, is not JSON, or that a limit refuses is refused with the
// compiler's message, and nothing is registered; hostile schemas are
// refused quickly.
func TestFunctionFormatsRefusedAtRegistration(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	s, _ := attach(t, e, "w")
	// 30 levels of anyOf over two $refs: 2^30 evaluations in under 2 KiB.
	var chain strings.Builder
	chain.WriteString(`{"$ref":"#/$defs/d0","$defs":{`)
	for i := range 30 {
		chain.WriteString(`"d` + strconv.Itoa(i) + `":{"anyOf":[{"$ref":"#/$defs/d` + strconv.Itoa(i+1) + `"},{"$ref":"#/$defs/d` + strconv.Itoa(i+1) + `"}]},`)
	}
	chain.WriteString(`"d30":{"type":"string"}}}`)
	for name, tc := range map[string]struct{ request, response, want string }{
		"bad type":       {request: `{"type":"nope"}`, want: `request_format: schema refused:`},
		"not json":       {response: `{not json`, want: `response_format: schema refused: not JSON`},
		"remote ref":     {request: `{"$ref":"https://example.com/s.json"}`, want: `request_format: schema refused:`},
		"too big":        {request: `{"description":"` + strings.Repeat("x", 300<<10) + `"}`, want: `over the limit of 262144`},
		"regex":          {request: `{"pattern":"` + strings.Repeat("a{1000}", 100) + `"}`, want: `instructions, over the limit of 1000`},
		"ref recursion":  {request: chain.String(), want: `subschema evaluations`},
		"self ref cycle": {request: `{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, want: `request_format: schema refused:`},
	} {
		start := time.Now()
		err := s.RegisterFunctionSpec("w::f", engine.FunctionSpec{RequestFormat: json.RawMessage(tc.request), ResponseFormat: json.RawMessage(tc.response)})
		if code(err) != codes.InvalidArgument || !strings.Contains(engine.AsError(err).Message, tc.want) {
			t.Errorf("%s: %v, want invalid_argument containing %q", name, err, tc.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: refused after %v", name, d)
		}
		if e.HasFunction("w::f") {
			t.Fatalf("%s: a refused registration registered the function", name)
		}
	}
}

// TestFunctionFormatsListed: engine::functions::list and ::info carry the
// formats and whether the engine checks them.
func TestFunctionFormatsListed(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	s, _ := attach(t, e, "math")
	if err := s.RegisterFunctionSpec("math::add", engine.FunctionSpec{RequestFormat: json.RawMessage(addRequest)}); err != nil {
		t.Fatal(err)
	}
	out, err := e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnFunctionsList})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Functions []map[string]json.RawMessage `json:"functions"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	var found bool
	for _, f := range list.Functions {
		if string(f["function_id"]) == `"math::add"` {
			found = true
			var want bytes.Buffer
			json.Compact(&want, []byte(addRequest))
			if string(f["request_format"]) != want.String() || string(f["validated"]) != "true" {
				t.Errorf("listed %s", mapString(f))
			}
		}
	}
	if !found {
		t.Fatalf("math::add not listed: %s", out)
	}
	out, err = e.Trigger(t.Context(), engine.Call{FunctionID: engine.FnFunctionsInfo, Payload: []byte(`{"function_id":"math::add"}`)})
	if err != nil || !bytes.Contains(out, []byte(`"validated":true`)) || !bytes.Contains(out, []byte(`"response_format":null`)) {
		t.Fatalf("info = %s, %v", out, err)
	}
}

func mapString(m map[string]json.RawMessage) string { b, _ := json.Marshal(m); return string(b) }

// TestFunctionFormatsResultLogged: a result that breaks its
// response_format is logged with the worker's identity, at most once per
// interval per worker.
func TestFunctionFormatsResultLogged(t *testing.T) {
	t.Parallel()
	var buf lockedBuf
	e := newEngine(t, engine.Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	s, p := attach(t, e, "math")
	if err := s.RegisterFunctionSpec("math::add", engine.FunctionSpec{ResponseFormat: json.RawMessage(addResponse)}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		serveOnce(t, s, p, `{}`)
		if _, err := e.Trigger(t.Context(), engine.Call{FunctionID: "math::add"}); !errors.Is(err, engine.ErrHandlerError) {
			t.Fatal(err)
		}
	}
	logged := buf.String()
	if n := strings.Count(logged, "breaks its response_format"); n != 1 {
		t.Fatalf("%d lines logged for 5 bad results, want 1:\n%s", n, logged)
	}
	for _, want := range []string{"worker_id=" + s.ID(), "worker_name=math", "function_id=math::add", "/sum: required"} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
}

// TestFunctionFormatsAtEnqueue: a worker's enqueue of a call to a
// function served here is refused at once when its payload breaks the
// request_format, instead of failing on every retry; nothing is queued.
func TestFunctionFormatsAtEnqueue(t *testing.T) {
	t.Parallel()
	e := newEngine(t, engine.Config{})
	var queued atomic.Int32
	e.SetEnqueuer(enqueuerFunc(func(context.Context, string, engine.Call) ([]byte, error) {
		queued.Add(1)
		return []byte(`{"message_receipt_id":"q"}`), nil
	}))
	s, _ := attach(t, e, "math")
	if err := s.RegisterFunctionSpec("math::add", engine.FunctionSpec{RequestFormat: json.RawMessage(addRequest)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Enqueue(t.Context(), "jobs", engine.Call{FunctionID: "math::add", Payload: []byte(`{"a":1}`)})
	if !errors.Is(err, engine.ErrRequestFormat) || !strings.Contains(err.Error(), "/b: required") || queued.Load() != 0 {
		t.Fatalf("invalid enqueue = %v (%d queued)", err, queued.Load())
	}
	if _, err := s.Enqueue(t.Context(), "jobs", engine.Call{FunctionID: "math::add", Payload: []byte(`{"a":1,"b":2}`)}); err != nil || queued.Load() != 1 {
		t.Fatalf("valid enqueue = %v (%d queued)", err, queued.Load())
	}
}
