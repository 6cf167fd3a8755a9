package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	trine "github.com/trinehq/trine/worker-sdk"
)

// The frames an iii worker receives, typed as iii's Go SDK
// (sdk/packages/go/iii/protocol.go) and Rust SDK type them: invocation ids
// are UUIDs (the SDKs drop a frame whose id does not parse), a result's id
// is required, and so are the fields the SDKs read without a default.
type (
	typedEnvelope struct {
		Type string `json:"type"`
	}
	typedWorkerRegistered struct {
		WorkerID      uuid.UUID `json:"worker_id"`
		ReattachToken string    `json:"reattach_token"`
	}
	typedInvokeFunction struct {
		InvocationID *uuid.UUID      `json:"invocation_id"`
		FunctionID   string          `json:"function_id"`
		Data         json.RawMessage `json:"data"`
	}
	typedInvocationResult struct {
		InvocationID *uuid.UUID      `json:"invocation_id"` // required: checked below
		FunctionID   string          `json:"function_id"`
		Result       json.RawMessage `json:"result"`
		Error        *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	typedRegisterTrigger struct {
		ID          string          `json:"id"`
		TriggerType string          `json:"trigger_type"`
		FunctionID  string          `json:"function_id"`
		Config      json.RawMessage `json:"config"`
	}
)

// typedWorker is an iii worker that decodes strictly: a frame its SDK
// would drop fails the test.
type typedWorker struct {
	t        *testing.T
	ws       *websocket.Conn
	workerID uuid.UUID
	calls    chan typedInvokeFunction
	results  chan typedInvocationResult
	triggers chan typedRegisterTrigger
}

func dialTyped(t *testing.T, ctx context.Context, iiiAddr string) *typedWorker {
	ws, _, err := websocket.Dial(ctx, "ws://"+iiiAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { _ = ws.CloseNow() })
	w := &typedWorker{t: t, ws: ws, calls: make(chan typedInvokeFunction, 16),
		results: make(chan typedInvocationResult, 16), triggers: make(chan typedRegisterTrigger, 16)}
	_, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var reg typedWorkerRegistered
	if err := decodeTyped(data, "workerregistered", &reg); err != nil {
		t.Fatal(err)
	}
	w.workerID = reg.WorkerID
	go w.readLoop(ctx)
	return w
}

// decodeTyped decodes one frame of the given type as the typed SDKs do.
func decodeTyped(data []byte, want string, v any) error {
	var env typedEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("frame %s: %w", data, err)
	}
	if env.Type != want {
		return fmt.Errorf("frame %s: type %q, want %q", data, env.Type, want)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("a typed iii SDK drops %s: %w", data, err)
	}
	return nil
}

func (w *typedWorker) readLoop(ctx context.Context) {
	for {
		_, data, err := w.ws.Read(ctx)
		if err != nil {
			return
		}
		var env typedEnvelope
		if err := json.Unmarshal(data, &env); err != nil {
			w.t.Errorf("frame %s: %v", data, err)
			return
		}
		var derr error
		switch env.Type {
		case "invokefunction":
			var m typedInvokeFunction
			if derr = decodeTyped(data, env.Type, &m); derr == nil {
				w.calls <- m
			}
		case "invocationresult":
			var m typedInvocationResult
			if derr = decodeTyped(data, env.Type, &m); derr == nil {
				if m.InvocationID == nil {
					derr = fmt.Errorf("invocationresult without its required invocation_id: %s", data)
				} else {
					w.results <- m
				}
			}
		case "registertrigger":
			var m typedRegisterTrigger
			if derr = decodeTyped(data, env.Type, &m); derr == nil {
				w.triggers <- m
			}
		}
		if derr != nil {
			w.t.Error(derr)
		}
	}
}

func (w *typedWorker) send(ctx context.Context, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.ws.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

// serve answers the next n invocations of function id with their data,
// checking that each carries a UUID.
func (w *typedWorker) serve(ctx context.Context, n int) []typedInvokeFunction {
	var got []typedInvokeFunction
	for range n {
		select {
		case m := <-w.calls:
			if m.InvocationID == nil {
				w.t.Fatalf("invokefunction %s without invocation_id", m.FunctionID)
			}
			w.send(ctx, map[string]any{"type": "invocationresult", "invocation_id": m.InvocationID.String(),
				"function_id": m.FunctionID, "result": map[string]json.RawMessage{"echo": m.Data}})
			got = append(got, m)
		case <-ctx.Done():
			w.t.Fatalf("waiting for call %d of %d: %v", len(got)+1, n, ctx.Err())
		}
	}
	return got
}

// TestTypedIIIClient is an iii worker that decodes every frame the way
// iii's Go and Rust SDKs do (UUID invocation ids, required fields), served
// through every path that calls a worker: a gRPC worker's trigger, an http
// route, a stream trigger, and a trigger type it provides; and its own call
// of a built-in, answered with its own UUID.
func TestTypedIIIClient(t *testing.T) {
	grpcAddr, httpAddr, iiiAddr := startEngine(t, buildTrine(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := dialTyped(t, ctx, iiiAddr)
	if w.workerID == uuid.Nil {
		t.Fatal("worker_id is the nil UUID")
	}
	w.send(ctx, map[string]any{"type": "registerfunction", "id": "typed::echo", "request_format": nil, "response_format": nil})
	w.send(ctx, map[string]any{"type": "registertriggertype", "id": "typed-tt", "description": "typed test type"})
	w.send(ctx, map[string]any{"type": "registertrigger", "id": "typed-route", "trigger_type": "http", "function_id": "typed::echo",
		"config": map[string]any{"api_path": "typed/:id", "http_method": "GET"}})
	w.send(ctx, map[string]any{"type": "registertrigger", "id": "typed-stream", "trigger_type": "stream", "function_id": "typed::echo",
		"config": map[string]any{"stream_name": "typed"}})
	w.send(ctx, map[string]any{"type": "invokefunction", "function_id": "engine::workers::register",
		"data": map[string]any{"runtime": "rust", "version": "0.23.0", "name": "typed", "os": "linux", "pid": 1}, "action": map[string]any{"type": "void"}})

	g := trine.RegisterWorker(grpcAddr, trine.WithName("typed-peer"), trine.WithCloseTimeout(time.Second))
	defer g.Close()
	must(t, g.Connect(ctx))
	waitFunction(t, ctx, g, "typed::echo")

	// A gRPC worker's call.
	type answer struct {
		out json.RawMessage
		err error
	}
	done := make(chan answer, 1)
	go func() {
		out, err := g.Trigger(ctx, "typed::echo", map[string]int{"n": 1})
		done <- answer{out, err}
	}()
	w.serve(ctx, 1)
	if a := <-done; a.err != nil || !bytes.Contains(a.out, []byte(`"n":1`)) {
		t.Fatalf("gRPC call through the typed worker: %s, %v", a.out, a.err)
	}

	// An http route.
	hdone := make(chan answer, 1)
	go func() {
		resp, err := http.Get("http://" + httpAddr + "/typed/42")
		if err != nil {
			hdone <- answer{nil, err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		hdone <- answer{b, err}
	}()
	calls := w.serve(ctx, 1)
	if !bytes.Contains(calls[0].Data, []byte(`"42"`)) {
		t.Fatalf("http call data %s", calls[0].Data)
	}
	if a := <-hdone; a.err != nil {
		t.Fatalf("http route through the typed worker: %s, %v", a.out, a.err)
	}

	// A stream trigger.
	if _, err := g.Trigger(ctx, "stream::set", map[string]any{"stream_name": "typed", "group_id": "g", "item_id": "i", "data": map[string]int{"v": 7}}); err != nil {
		t.Fatal(err)
	}
	if calls := w.serve(ctx, 1); !bytes.Contains(calls[0].Data, []byte(`"v":7`)) {
		t.Fatalf("stream trigger data %s", calls[0].Data)
	}

	// A trigger type the typed worker provides: the engine forwards the
	// binding to it.
	bound := make(chan error, 1)
	go func() {
		bound <- g.RegisterTrigger(ctx, trine.Trigger{ID: "bind-1", Type: "typed-tt", FunctionID: "typed::echo", Config: json.RawMessage(`{"x":1}`)})
	}()
	select {
	case tr := <-w.triggers:
		if tr.ID != "bind-1" || tr.TriggerType != "typed-tt" || tr.FunctionID != "typed::echo" {
			t.Fatalf("registertrigger %+v", tr)
		}
		w.send(ctx, map[string]any{"type": "triggerregistrationresult", "id": tr.ID, "trigger_type": tr.TriggerType, "function_id": tr.FunctionID})
	case <-ctx.Done():
		t.Fatal("no registertrigger reached the provider")
	}
	if err := <-bound; err != nil {
		t.Fatal(err)
	}

	// The typed worker's own call comes back with its own UUID.
	id := uuid.New()
	w.send(ctx, map[string]any{"type": "invokefunction", "invocation_id": id.String(), "function_id": "engine::functions::list", "data": map[string]any{}})
	select {
	case r := <-w.results:
		if *r.InvocationID != id || r.Error != nil || !strings.Contains(string(r.Result), "typed::echo") {
			t.Fatalf("result %v %s %+v, want id %v", r.InvocationID, r.Result, r.Error, id)
		}
	case <-ctx.Done():
		t.Fatal("no invocationresult")
	}
}

// waitFunction waits until function id is registered.
func waitFunction(t *testing.T, ctx context.Context, w *trine.Worker, id string) {
	t.Helper()
	for {
		out, err := w.Trigger(ctx, "engine::functions::list", map[string]any{})
		if err == nil && bytes.Contains(out, []byte(`"`+id+`"`)) {
			return
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s not registered: %s, %v", id, out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
