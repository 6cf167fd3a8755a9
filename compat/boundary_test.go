package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	trine "github.com/trinehq/trine/worker-sdk"
)

// boundaryConfig gives the engine a public gRPC listener and a public iii
// listener with the same policy: api::* and the function listing are
// exposed, and so is what trusted workers register with {public: true};
// every call goes through test::mw.
const boundaryConfig = `listeners:
  - protocol: grpc
    addr: 127.0.0.1:0
    middleware_function_id: test::mw
    rbac:
      auth_function_id: test::auth
      expose_functions: [match("api::*"), match("engine::functions::list"), {metadata: {public: true}}]
  - protocol: iii
    addr: 127.0.0.1:0
    middleware_function_id: test::mw
    rbac:
      auth_function_id: test::auth
      expose_functions: [match("api::*"), match("engine::functions::list"), {metadata: {public: true}}]
queues:
  jobs: {}
`

// hostileTriggers are the triggers a hostile connection tries, each naming
// admin::secret somewhere: as the function of every trigger type, as a
// condition and as http middleware.
var hostileTriggers = []struct {
	id, typ string
	fn      string
	config  string
}{
	{"evil-http", "http", "admin::secret", `{"api_path":"evil","http_method":"POST"}`},
	{"evil-cron", "cron", "admin::secret", `{"expression":"* * * * * *"}`},
	{"evil-cron-condition", "cron", "api::echo", `{"expression":"* * * * * *","condition_function_id":"admin::secret"}`},
	{"evil-http-middleware", "http", "api::echo", `{"api_path":"evil-mw","http_method":"POST","middleware_function_ids":["admin::secret"]}`},
	{"evil-http-condition", "http", "api::echo", `{"api_path":"evil-cond","http_method":"POST","condition_function_id":"admin::secret"}`},
	{"evil-state", "state", "admin::secret", `{"scope":"s"}`},
	{"evil-stream", "stream", "admin::secret", `{"stream_name":"s"}`},
	{"evil-join", "stream:join", "admin::secret", `{"stream_name":"s"}`},
	{"evil-subscribe", "subscribe", "admin::secret", `{"topic":"news"}`},
	{"evil-durable", "durable:subscriber", "admin::secret", `{"topic":"orders"}`},
	{"evil-available", "engine::functions-available", "admin::secret", `{}`},
}

// TestBoundaryHoldsOnEveryPath: a hostile token on a public gRPC listener
// and on a public iii listener tries every path to a function its policy
// hides (a direct call, every trigger type, a condition, a middleware, an
// enqueue, the metadata of a trusted function, discovery). None runs it,
// each refusal changes nothing, and what it may do goes through the
// listener's middleware.
func TestBoundaryHoldsOnEveryPath(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "trine.yaml")
	must(t, os.WriteFile(conf, []byte(boundaryConfig), 0o600))
	a := startEngineWith(t, buildTrine(t), "--config", conf)
	ls := regexp.MustCompile(`(grpc|iii)/\d+=(\S+)`).FindAllStringSubmatch(a.rest, -1)
	public := map[string]string{}
	for _, m := range ls {
		public[m[1]] = m[2]
	}
	if public["grpc"] == "" || public["iii"] == "" {
		t.Fatalf("no public listeners on the start line: %q", a.rest)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var secret, echo atomic.Int32
	var mwMu sync.Mutex
	var mwSeen []string
	admin := trine.RegisterWorker(a.grpc, trine.WithName("admin"))
	defer admin.Close()
	must(t, admin.Connect(ctx))
	must(t, admin.RegisterFunction(ctx, "test::auth", func(_ context.Context, p json.RawMessage) (any, error) {
		var in struct {
			Headers map[string]string `json:"headers"`
		}
		_ = json.Unmarshal(p, &in)
		return map[string]any{"context": map[string]string{"user": in.Headers["authorization"]}}, nil
	}))
	must(t, admin.RegisterFunction(ctx, "test::mw", func(ctx context.Context, p json.RawMessage) (any, error) {
		var in struct {
			FunctionID string          `json:"function_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		_ = json.Unmarshal(p, &in)
		mwMu.Lock()
		mwSeen = append(mwSeen, in.FunctionID)
		mwMu.Unlock()
		return admin.Trigger(ctx, in.FunctionID, in.Payload)
	}))
	must(t, admin.RegisterFunction(ctx, "admin::secret", func(context.Context, json.RawMessage) (any, error) {
		secret.Add(1)
		return "secret", nil
	}))
	must(t, admin.RegisterFunction(ctx, "api::echo", func(_ context.Context, p json.RawMessage) (any, error) {
		echo.Add(1)
		return p, nil
	}))

	overview := func() string {
		out, err := admin.Trigger(ctx, "engine::triggers::overview", nil)
		must(t, err)
		return string(out)
	}
	checkNothingKept := func(transport string) {
		t.Helper()
		ov := overview()
		for _, h := range hostileTriggers {
			if strings.Contains(ov, `"`+h.id+`"`) {
				t.Errorf("%s: trigger %s was kept: %s", transport, h.id, ov)
			}
		}
		for _, path := range []string{"/evil", "/evil-mw", "/evil-cond"} {
			resp, err := http.Post("http://"+a.http+path, "application/json", strings.NewReader(`{"x":1}`))
			must(t, err)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: POST %s answered %d, want 404 (no route)", transport, path, resp.StatusCode)
			}
		}
	}

	t.Run("grpc", func(t *testing.T) {
		w := trine.RegisterWorker(public["grpc"], trine.WithName("hostile"), trine.WithToken("mallory"))
		defer w.Close()
		must(t, w.Connect(ctx))
		if _, err := w.Trigger(ctx, "admin::secret", nil); !isCode(err, trine.CodeForbidden) {
			t.Errorf("direct call: %v, want forbidden", err)
		}
		for _, h := range hostileTriggers {
			err := w.RegisterTrigger(ctx, trine.Trigger{ID: h.id, Type: h.typ, FunctionID: h.fn, Config: json.RawMessage(h.config)})
			if !isCode(err, trine.CodeForbidden) {
				t.Errorf("trigger %s: %v, want forbidden", h.id, err)
			}
		}
		if _, err := w.Enqueue(ctx, "jobs", "admin::secret", map[string]int{"n": 1}); !isCode(err, trine.CodeForbidden) {
			t.Errorf("enqueue: %v, want forbidden", err)
		}
		err := w.RegisterFunction(ctx, "admin::secret", func(context.Context, json.RawMessage) (any, error) { return "stolen", nil },
			trine.WithMetadata(map[string]bool{"public": true}))
		if !isCode(err, trine.CodeConflict) {
			t.Errorf("joining admin::secret with public metadata: %v, want conflict", err)
		}
		out, err := w.Trigger(ctx, "engine::functions::list", nil)
		must(t, err)
		if strings.Contains(string(out), "admin::secret") || strings.Contains(string(out), "test::auth") || !strings.Contains(string(out), "api::echo") {
			t.Errorf("discovery: %s", out)
		}
		// Its own function cannot read through a trigger what it may not
		// read by a call: state and stream changes, subscribers' contexts,
		// topics.
		must(t, w.RegisterFunction(ctx, "mallory::sink", func(context.Context, json.RawMessage) (any, error) { return nil, nil }))
		for _, h := range hostileTriggers {
			if h.typ != "state" && h.typ != "stream" && h.typ != "stream:join" && h.typ != "subscribe" && h.typ != "durable:subscriber" {
				continue
			}
			err := w.RegisterTrigger(ctx, trine.Trigger{ID: h.id, Type: h.typ, FunctionID: "mallory::sink", Config: json.RawMessage(h.config)})
			if !isCode(err, trine.CodeForbidden) {
				t.Errorf("trigger %s on its own function: %v, want forbidden", h.id, err)
			}
		}
		// What it may do still works, through the middleware.
		must(t, w.RegisterTrigger(ctx, trine.Trigger{ID: "ok-http", Type: "http", FunctionID: "api::echo", Config: map[string]string{"api_path": "ok", "http_method": "POST"}}))
		resp, err := http.Post("http://"+a.http+"/ok", "application/json", strings.NewReader(`{"x":1}`))
		must(t, err)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("POST /ok: %d", resp.StatusCode)
		}
		must(t, w.UnregisterTrigger(ctx, "ok-http"))
		checkNothingKept("grpc")
	})

	t.Run("iii", func(t *testing.T) {
		h := http.Header{}
		h.Set("Authorization", "Bearer mallory-iii")
		ws, _, err := websocket.Dial(ctx, "ws://"+public["iii"], &websocket.DialOptions{HTTPHeader: h})
		must(t, err)
		defer func() { _ = ws.CloseNow() }()
		ws.SetReadLimit(-1)
		frames := make(chan map[string]any, 64)
		go func() {
			for {
				_, b, err := ws.Read(ctx)
				if err != nil {
					close(frames)
					return
				}
				var m map[string]any
				if json.Unmarshal(b, &m) == nil {
					frames <- m
				}
			}
		}()
		send := func(v any) {
			b, _ := json.Marshal(v)
			must(t, ws.Write(ctx, websocket.MessageText, b))
		}
		call := func(id, fn string, payload any) map[string]any {
			send(map[string]any{"type": "invokefunction", "invocation_id": id, "function_id": fn, "data": payload})
			for {
				select {
				case m, ok := <-frames:
					if !ok {
						t.Fatal("the iii socket closed")
					}
					if m["type"] == "invocationresult" && m["invocation_id"] == id {
						return m
					}
				case <-ctx.Done():
					t.Fatalf("no answer to %s", fn)
				}
			}
		}
		errCode := func(m map[string]any) string {
			e, _ := m["error"].(map[string]any)
			c, _ := e["code"].(string)
			return strings.ToLower(c)
		}
		if c := errCode(call("11111111-1111-4111-8111-111111111111", "admin::secret", nil)); c != "forbidden" {
			t.Errorf("direct call: error code %q, want forbidden", c)
		}
		for _, h := range hostileTriggers {
			send(map[string]any{"type": "registertrigger", "id": h.id, "trigger_type": h.typ, "function_id": h.fn, "config": json.RawMessage(h.config)})
		}
		send(map[string]any{"type": "registerfunction", "id": "admin::secret", "metadata": map[string]bool{"public": true}})
		send(map[string]any{"type": "invokefunction", "invocation_id": "22222222-2222-4222-8222-222222222222", "function_id": "admin::secret",
			"data": map[string]int{"n": 1}, "action": map[string]any{"type": "enqueue", "queue": "jobs"}})
		m := call("33333333-3333-4333-8333-333333333333", "engine::functions::list", nil)
		res, _ := json.Marshal(m["result"])
		if s := string(res); strings.Contains(s, "admin::secret") || !strings.Contains(s, "api::echo") {
			t.Errorf("discovery: %s", s)
		}
		// Calls from another trusted caller never reach the stranger's
		// replica, and the stranger set no metadata on admin::secret.
		for range 6 {
			out, err := admin.Trigger(ctx, "admin::secret", nil)
			if err != nil || string(out) != `"secret"` {
				t.Fatalf("admin::secret answered %s, %v", out, err)
			}
		}
		info, err := admin.Trigger(ctx, "engine::functions::info", map[string]string{"function_id": "admin::secret"})
		must(t, err)
		if strings.Contains(string(info), "public") {
			t.Errorf("admin::secret took the stranger's metadata: %s", info)
		}
		checkNothingKept("iii")
	})

	// Give every trigger that might have slipped through the time to fire
	// (cron fires every second), then check that admin::secret ran only
	// for the admin's own six calls.
	deadline := time.NewTimer(2500 * time.Millisecond)
	<-deadline.C
	if n := secret.Load(); n != 6 {
		t.Errorf("admin::secret ran %d times, want the admin's own 6", n)
	}
	mwMu.Lock()
	defer mwMu.Unlock()
	if !slices.Contains(mwSeen, "api::echo") {
		t.Errorf("the http route of the public connection did not go through the middleware: %v", mwSeen)
	}
	if slices.Contains(mwSeen, "admin::secret") {
		t.Errorf("the middleware was asked to run admin::secret: %v", mwSeen)
	}
}

func isCode(err error, c trine.Code) bool {
	var e *trine.Error
	return errors.As(err, &e) && e.Code == c
}
