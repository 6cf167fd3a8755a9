package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestHTTPInvokeNeverReachesTheEngine: with --http-invoke-allow-private on,
// an HTTP-invoked function can reach neither the engine's http listener
// through 0.0.0.0 nor its embedded NATS (on a port the OS chose) through a
// name, and the NATS INFO line never shows in the error.
func TestHTTPInvokeNeverReachesTheEngine(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0",
		"--http-invoke-hosts", "*", "--http-invoke-allow-http", "on", "--http-invoke-allow-private", "on")...)
	natsAddr, ok := strings.CutPrefix(e.nats, "embedded,")
	if !ok {
		t.Fatalf("nats=%s, want an embedded server with an address", e.nats)
	}
	_, natsPort, _ := net.SplitHostPort(natsAddr)
	_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(e.http, "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+e.iii, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	send := func(v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	send(map[string]any{"type": "invokefunction", "function_id": "engine::workers::register",
		"data": map[string]any{"runtime": "node", "name": "hooks"}, "action": map[string]any{"type": "void"}})
	register := func(id, url string) {
		send(map[string]any{"type": "registerfunction", "id": id, "invocation": map[string]any{"url": url}})
	}
	register("hook::nats", "http://localhost:"+natsPort+"/")
	register("hook::self", "http://0.0.0.0:"+httpPort+"/healthz")
	register("hook::self6", "http://[::]:"+httpPort+"/healthz")
	rejected := map[string]string{}
	for len(rejected) < 2 {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for the refusals: %v (refused so far: %v)", err, rejected)
		}
		var m struct {
			Type       string `json:"type"`
			FunctionID string `json:"function_id"`
			Message    string `json:"message"`
		}
		if json.Unmarshal(b, &m) == nil && m.Type == "registrationrejected" {
			rejected[m.FunctionID] = m.Message
		}
	}
	for _, id := range []string{"hook::self", "hook::self6"} {
		if !strings.Contains(rejected[id], "unspecified") {
			t.Errorf("%s: refused with %q, want the unspecified address named", id, rejected[id])
		}
	}

	w := trine.RegisterWorker(e.grpc, trine.WithName("caller"), trine.WithCloseTimeout(time.Second))
	defer w.Close()
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	var out json.RawMessage
	poll.CheckFor(t, 20*time.Second, poll.Holds("hook::nats to be registered", func() bool {
		out, err = w.Trigger(ctx, "hook::nats", nil)
		return !errors.Is(err, trine.ErrFunctionNotFound)
	}))
	var te *trine.Error
	if !errors.As(err, &te) || te.Code != trine.CodeUnavailable || !strings.Contains(te.Message, "own listeners") {
		t.Fatalf("hook::nats: %s %v, want unavailable: the engine's own listener", out, err)
	}
	if strings.Contains(err.Error(), "INFO") || strings.Contains(err.Error(), "server_id") {
		t.Fatalf("the NATS INFO line is in the error: %v", err)
	}
}
