package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestHTTPTriggerAndIIIListener: a gRPC worker's function behind an http
// trigger answers real HTTP requests on --http-addr, beside /healthz; the
// iii listener greets a worker; with --iii-addr off there is none.
func TestHTTPTriggerAndIIIListener(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--http-timeout", "500ms")...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := trine.RegisterWorker(e.grpc, trine.WithName("http-test"), trine.WithCloseTimeout(time.Second))
	defer w.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	getUser := func(_ context.Context, p json.RawMessage) (any, error) {
		var req struct {
			PathParams map[string]string `json:"path_params"`
			Response   *struct {
				Direction string `json:"direction"`
			} `json:"response"`
		}
		if err := json.Unmarshal(p, &req); err != nil {
			return nil, err
		}
		// --http-streaming is on by default: the payload carries a
		// response channel ref.
		streaming := req.Response != nil && req.Response.Direction == "write"
		return map[string]any{"status_code": 200, "body": map[string]any{"id": req.PathParams["id"], "streaming": streaming}}, nil
	}
	must(w.RegisterFunction(ctx, "users::get", getUser))
	must(w.RegisterFunction(ctx, "users::slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	must(w.Connect(ctx))
	must(w.RegisterTrigger(ctx, trine.Trigger{ID: "get-user", Type: "http", FunctionID: "users::get",
		Config: json.RawMessage(`{"api_path":"users/:id","http_method":"GET"}`)}))
	must(w.RegisterTrigger(ctx, trine.Trigger{ID: "slow", Type: "http", FunctionID: "users::slow",
		Config: json.RawMessage(`{"api_path":"slow","http_method":"GET"}`)}))
	// Conflicting and reserved routes are refused at registration.
	for _, cfg := range []string{`{"api_path":"/users/:name","http_method":"get"}`, `{"api_path":"healthz","http_method":"GET"}`} {
		if err := w.RegisterTrigger(ctx, trine.Trigger{ID: "bad", Type: "http", FunctionID: "users::get", Config: json.RawMessage(cfg)}); err == nil {
			t.Errorf("route %s accepted", cfg)
		}
	}

	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/users/42", http.StatusOK, `{"id":"42","streaming":true}`},
		{"/users/a%20b", http.StatusOK, `{"id":"a b","streaming":true}`},
		{"/nope", http.StatusNotFound, `"code":"NOT_FOUND"`},
		{"/slow", http.StatusGatewayTimeout, `"code":"TIMEOUT"`},
		{"/healthz", http.StatusOK, `{"status":"ok"}`},
	} {
		if code, body := get(t, e.http+tc.path); code != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s = %d %q, want %d with %s", tc.path, code, body, tc.status, tc.body)
		}
	}

	// The iii listener greets a worker with its id.
	ws, _, err := websocket.Dial(ctx, "ws://"+e.iii, nil)
	must(err)
	defer ws.CloseNow()
	_, b, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(b), `"type":"workerregistered"`) {
		t.Fatalf("first iii message %s, %v", b, err)
	}

	off := startEngine(t, trineBin, testEnv(), engineArgs(t, "--iii-addr", "off", "--http-streaming", "off")...)
	if off.iii != "off" {
		t.Fatalf("--iii-addr off: listening line says iii=%s", off.iii)
	}
	// --http-streaming off: no channel refs in the payload.
	w2 := trine.RegisterWorker(off.grpc, trine.WithName("http-test-off"), trine.WithCloseTimeout(time.Second))
	defer w2.Close()
	must(w2.RegisterFunction(ctx, "users::get", getUser))
	must(w2.Connect(ctx))
	must(w2.RegisterTrigger(ctx, trine.Trigger{ID: "get-user", Type: "http", FunctionID: "users::get",
		Config: json.RawMessage(`{"api_path":"users/:id","http_method":"GET"}`)}))
	if code, body := get(t, off.http+"/users/7"); code != http.StatusOK || body != `{"id":"7","streaming":false}` {
		t.Fatalf("--http-streaming off: GET /users/7 = %d %q", code, body)
	}
}
