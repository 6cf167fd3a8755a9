package httptrigger_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/poll"
)

func TestPayload(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	h.echo(t, "echo")
	h.route(t, "files", "echo", `{"api_path": "users/:id/files/:name/", "http_method": "GET"}`)

	r := h.do(t, "GET", "/users/42/files/a%2Fb%20c?q=x&tag=a&tag=b&empty=", nil,
		"X-Multi", "1", "X-Multi", "2", "X-Single", "v")
	got := r.request(t)
	if got.Path != "/users/:id/files/:name" || got.Method != "GET" {
		t.Errorf("path, method = %q, %q, want /users/:id/files/:name, GET", got.Path, got.Method)
	}
	wantTrigger := httptrigger.TriggerInfo{Type: "http", Path: "/users/:id/files/:name", Method: "GET"}
	if got.Trigger != wantTrigger {
		t.Errorf("trigger = %+v, want %+v", got.Trigger, wantTrigger)
	}
	if want := map[string]string{"id": "42", "name": "a/b c"}; !reflect.DeepEqual(got.PathParams, want) {
		t.Errorf("path_params = %v, want %v", got.PathParams, want)
	}
	wantQuery := map[string]any{"q": "x", "tag": []any{"a", "b"}, "empty": ""}
	if !reflect.DeepEqual(got.QueryParams, wantQuery) {
		t.Errorf("query_params = %#v, want %#v", got.QueryParams, wantQuery)
	}
	for name, want := range map[string]string{"x-multi": "1, 2", "x-single": "v", "host": strings.TrimPrefix(h.srv.URL, "http://")} {
		if got.Headers[name] != want {
			t.Errorf("headers[%q] = %q, want %q (headers %v)", name, got.Headers[name], want, got.Headers)
		}
	}
	for name := range got.Headers {
		if name != strings.ToLower(name) {
			t.Errorf("header name %q is not lowercased", name)
		}
	}
	if string(got.Body) != "null" {
		t.Errorf("body = %s, want null", got.Body)
	}

	// The raw payload has every member, objects even when empty.
	r = h.do(t, "GET", "/users/1/files/f", nil)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"path", "method", "headers", "query_params", "path_params", "body", "trigger"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("payload %s has no %q", r.body, k)
		}
	}
	if string(raw["query_params"]) != "{}" {
		t.Errorf("query_params = %s, want {}", raw["query_params"])
	}
}

func TestBodies(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{MaxBodyBytes: 64})
	calls := h.echo(t, "echo")
	h.route(t, "post", "echo", `{"api_path": "/in", "http_method": "post"}`)

	tests := []struct {
		name, ctype, body, want string
	}{
		{"json", "application/json", `{"a": [1, 2]}`, `{"a":[1,2]}`},
		{"json without content type", "", `[true]`, `[true]`},
		{"json with params", "application/json; charset=utf-8", `"s"`, `"s"`},
		{"plus json", "application/vnd.api+json", `{"x":1}`, `{"x":1}`},
		{"empty", "application/json", ``, `null`},
		{"text", "text/plain", `not json {`, `"not json {"`},
		{"form", "application/x-www-form-urlencoded", `a=1&b=2`, `"a=1\u0026b=2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.ctype != "" {
				hdr = []string{"Content-Type", tt.ctype}
			}
			got := h.do(t, "POST", "/in", strings.NewReader(tt.body), hdr...).request(t)
			if string(got.Body) != tt.want {
				t.Errorf("body = %s, want %s", got.Body, tt.want)
			}
		})
	}

	before := calls.Load()
	for _, tt := range []struct {
		name, ctype string
		body        io.Reader
		status      int
		code        string
	}{
		{"bad json", "", strings.NewReader(`{"a":`), 400, httptrigger.CodeInvalidJSON},
		{"bad json typed", "application/json", strings.NewReader(`nope`), 400, httptrigger.CodeInvalidJSON},
		{"bad plus json", "application/problem+json", strings.NewReader(`{`), 400, httptrigger.CodeInvalidJSON},
		{"json with invalid UTF-8", "application/json", strings.NewReader("\"\xff\""), 400, httptrigger.CodeInvalidJSON},
		{"json with a lone surrogate", "application/json", strings.NewReader(`{"k":"\ud800"}`), 400, httptrigger.CodeInvalidJSON},
		{"binary text", "application/octet-stream", bytes.NewReader([]byte{0xff, 0xfe, 0}), 415, httptrigger.CodeUnsupportedMediaType},
		{"too large", "application/json", strings.NewReader(`"` + strings.Repeat("x", 100) + `"`), 413, httptrigger.CodePayloadTooLarge},
		{"too large chunked", "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("x", 65))), 413, httptrigger.CodePayloadTooLarge},
	} {
		r := h.do(t, "POST", "/in", tt.body, "Content-Type", tt.ctype)
		t.Run(tt.name, func(t *testing.T) { r.wantError(t, tt.status, tt.code) })
	}
	if n := calls.Load() - before; n != 0 {
		t.Errorf("function called %d times for refused bodies, want 0", n)
	}
	// Exactly at the limit is fine.
	got := h.do(t, "POST", "/in", strings.NewReader(`"`+strings.Repeat("x", 62)+`"`)).request(t)
	if len(got.Body) != 64 {
		t.Errorf("body of 64 bytes = %s", got.Body)
	}
}

// rawRequest writes head and a partial body on a fresh connection, leaves
// it open (a stalling client), and reads the answer.
func rawRequest(t *testing.T, h *harness, head string) (reply, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, b, res.Close}, time.Since(began)
}

func TestStallingClient(t *testing.T) {
	t.Parallel()
	t.Run("body never completes", func(t *testing.T) {
		t.Parallel()
		h := start(t, httptrigger.Config{Timeout: 200 * time.Millisecond})
		calls := h.echo(t, "echo")
		h.route(t, "post", "echo", `{"api_path": "in", "http_method": "POST"}`)
		// Promise 10 bytes, send 1, then stall.
		r, took := rawRequest(t, h, "POST /in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{")
		r.wantError(t, http.StatusRequestTimeout, httptrigger.CodeRequestTimeout)
		if took > 3*time.Second {
			t.Errorf("answered after %v, want about 200ms", took)
		}
		if calls.Load() != 0 {
			t.Errorf("function called for an incomplete body")
		}
	})
	t.Run("declared too large", func(t *testing.T) {
		t.Parallel()
		h := start(t, httptrigger.Config{Timeout: 20 * time.Second, MaxBodyBytes: 64})
		calls := h.echo(t, "echo")
		h.route(t, "post", "echo", `{"api_path": "in", "http_method": "POST"}`)
		// Refused from its Content-Length alone: no waiting for the body.
		r, took := rawRequest(t, h, "POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
		r.wantError(t, http.StatusRequestEntityTooLarge, httptrigger.CodePayloadTooLarge)
		if took > 2*time.Second {
			t.Errorf("answered after %v, want at once", took)
		}
		if !r.close {
			t.Errorf("answer without Connection: close")
		}
		if calls.Load() != 0 {
			t.Errorf("function called for a body too large")
		}
	})
}

func TestMethodsAndMatching(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	for _, id := range []string{"get", "post", "param", "lit", "head", "root", "other"} {
		h.reply(t, id, fmt.Sprintf(`{"body": %q}`, id))
	}
	h.route(t, "t-get", "get", `{"api_path": "items", "http_method": "GET"}`)
	h.route(t, "t-post", "post", `{"api_path": "items", "http_method": "Post"}`)
	h.route(t, "t-head", "head", `{"api_path": "items", "http_method": "head"}`)
	h.route(t, "t-param", "param", `{"api_path": "a/:x", "http_method": "GET"}`)
	h.route(t, "t-lit", "lit", `{"api_path": "a/b", "http_method": "GET"}`)
	h.route(t, "t-other", "other", `{"api_path": "a/c", "http_method": "DELETE"}`)
	h.route(t, "t-root", "root", `{"api_path": "/", "http_method": "GET"}`)

	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/items", "get"},
		{"POST", "/items/", "post"},
		{"GET", "/a/b", "lit"},          // literal wins over the parameter
		{"GET", "/a/c", "param"},        // the literal a/c is DELETE only: fall back to a/:x
		{"DELETE", "/a/c", "other"},     // ...
		{"GET", "/a/%62", "lit"},        // segments are decoded before matching
		{"GET", "/a/b%2Fc", "param"},    // an encoded slash stays in its segment
		{"GET", "/", "root"},            // the root route
		{"GET", "", "root"},             // ...
		{"POST", "/a/x", ""},            // 405 below
		{"GET", "/items/more", ""},      // 404 below
		{"GET", "/a//b", ""},            // an empty segment matches nothing
		{"GET", "/nowhere", ""},         // ...
		{"OPTIONS", "/items", ""},       // OPTIONS is not answered on the routes' behalf
		{"PATCH", "/a/c", ""},           // allowed: DELETE, GET
		{"GET", "/a/b/c", ""},           // too long
		{"HEAD", "/items", "head-only"}, // HEAD has no body
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := h.do(t, tt.method, tt.path, nil)
			switch {
			case tt.want == "head-only":
				if r.status != 200 || len(r.body) != 0 {
					t.Errorf("HEAD = %d %q, want 200 and no body", r.status, r.body)
				}
			case tt.want != "":
				if r.status != 200 || string(r.body) != tt.want {
					t.Errorf("%s %s = %d %s, want 200 %s", tt.method, tt.path, r.status, r.body, tt.want)
				}
			}
		})
	}
	for _, tt := range []struct{ method, path, allow string }{
		{"PUT", "/items", "GET, HEAD, POST"},
		{"OPTIONS", "/items", "GET, HEAD, POST"},
		{"POST", "/a/x", "GET"},
		{"PATCH", "/a/c", "DELETE, GET"},
	} {
		r := h.do(t, tt.method, tt.path, nil)
		r.wantError(t, http.StatusMethodNotAllowed, httptrigger.CodeMethodNotAllowed)
		if got := r.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
	for _, p := range []string{"/items/more", "/nowhere", "/a//b", "/a/b/c", "//"} {
		h.do(t, "GET", p, nil).wantError(t, http.StatusNotFound, httptrigger.CodeNotFound)
	}
}

func TestConflicts(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{Reserved: []string{"/healthz", "metrics/", "/readyz"}})
	h.echo(t, "echo")
	h.route(t, "first", "echo", `{"api_path": "lists/:listId/:userId", "http_method": "GET"}`)

	// A route conflict is told in iii's words, which iii's SDK tests look for.
	const iii = "Route 'GET /lists/:userId/:listId' conflicts with already-registered route 'GET /lists/:listId/:userId'"
	for _, tt := range []struct{ name, config, message string }{
		{"same shape other names", `{"api_path": "lists/:userId/:listId", "http_method": "GET"}`, iii},
		{"same route other spelling", `{"api_path": "/lists/:a/:b/", "http_method": "get"}`, "conflicts with already-registered route"},
		{"reserved", `{"api_path": "healthz", "http_method": "GET"}`, "reserved"},
		{"reserved normalised", `{"api_path": "/metrics", "http_method": "POST"}`, "reserved"},
		{"reserved with slash", `{"api_path": "/readyz/", "http_method": "GET"}`, "reserved"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := h.register("second", "echo", tt.config)
			if code(err) != codes.Conflict || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("RegisterTrigger(%s) = %v, want conflict saying %q", tt.config, err, tt.message)
			}
		})
	}
	_, ts := h.e.Triggers()
	if len(ts) != 1 || ts[0].ID != "first" {
		t.Errorf("triggers after refusals = %+v, want only first", ts)
	}
	got := h.do(t, "GET", "/lists/L/U", nil).request(t)
	if want := map[string]string{"listId": "L", "userId": "U"}; !reflect.DeepEqual(got.PathParams, want) {
		t.Errorf("path_params = %v, want %v (the first route must keep answering)", got.PathParams, want)
	}

	// Not conflicts: another method, literal beside parameter, under a reserved path.
	h.route(t, "post", "echo", `{"api_path": "lists/:userId/:listId", "http_method": "POST"}`)
	h.route(t, "lit", "echo", `{"api_path": "lists/all/:userId", "http_method": "GET"}`)
	h.route(t, "under", "echo", `{"api_path": "healthz/:x", "http_method": "GET"}`)
	if got := h.do(t, "POST", "/lists/A/B", nil).request(t); got.PathParams["userId"] != "A" {
		t.Errorf("POST path_params = %v, want userId=A", got.PathParams)
	}
	if got := h.do(t, "GET", "/lists/all/B", nil).request(t); got.Path != "/lists/all/:userId" {
		t.Errorf("GET /lists/all/B matched %s, want /lists/all/:userId", got.Path)
	}

	// The provider itself refuses with an *engine.Error.
	err := h.p.RegisterTrigger(t.Context(), engine.Trigger{ID: "direct", Type: "http", FunctionID: "echo",
		Config: json.RawMessage(`{"api_path": "lists/:x/:y", "http_method": "GET"}`)})
	var ee *engine.Error
	if !errors.As(err, &ee) || ee.Code != codes.Conflict || !strings.Contains(ee.Message, "first") {
		t.Errorf("RegisterTrigger(conflict) = %v, want *engine.Error conflict naming the other trigger", err)
	}
}

func TestBadConfigs(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	for _, cfg := range []string{
		``, `null`, `"x"`, `[]`, `{}`,
		`{"http_method": "GET"}`,
		`{"api_path": "", "http_method": "GET"}`,
		`{"api_path": 1, "http_method": "GET"}`,
		`{"api_path": "a"}`,
		`{"api_path": "a", "http_method": ""}`,
		`{"api_path": "a", "http_method": "TRACE"}`,
		`{"api_path": "a", "http_method": "CONNECT"}`,
		`{"api_path": "a", "http_method": 1}`,
		`{"api_path": "a//b", "http_method": "GET"}`,
		`{"api_path": "//", "http_method": "GET"}`,
		`{"api_path": "a/:", "http_method": "GET"}`,
		`{"api_path": "a/:x/b/:x", "http_method": "GET"}`,
		`{"api_path": "a?b=1", "http_method": "GET"}`,
		`{"api_path": "a#b", "http_method": "GET"}`,
		`{"api_path": "a\tb", "http_method": "GET"}`,
		`{"api_path": "a%zz", "http_method": "GET"}`,
		`{"api_path": "a", "http_method": "GET", "condition_function_id": "a\nb"}`,
		`{"api_path": "a", "http_method": "GET", "middleware_function_ids": ["a\nb"]}`,
		`{"api_path": "a", "http_method": "GET", "middleware_function_ids": [""]}`,
		`{"api_path": "a", "http_method": "GET", "middleware_function_ids": "auth"}`,
		`{"api_path": "a", "http_method": "GET", "middleware_function_ids": ["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]}`,
	} {
		t.Run(cfg, func(t *testing.T) {
			err := h.register("bad", "fn", cfg)
			if code(err) != codes.InvalidArgument {
				t.Fatalf("RegisterTrigger(%s) = %v, want invalid_argument", cfg, err)
			}
			err = h.p.RegisterTrigger(t.Context(), engine.Trigger{ID: "bad", Type: "http", FunctionID: "fn", Config: json.RawMessage(cfg)})
			var ee *engine.Error
			if !errors.As(err, &ee) || ee.Code != codes.InvalidArgument || ee.Message == "" {
				t.Fatalf("Provider.RegisterTrigger(%s) = %#v, want *engine.Error invalid_argument", cfg, err)
			}
		})
	}
	if err := h.p.Register(h.e); code(err) != codes.Conflict {
		t.Errorf("second Register() = %v, want conflict", err)
	}
}

func TestReplaceAndUnregister(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	h.reply(t, "one", `{"body": "one"}`)
	h.reply(t, "two", `{"body": "two"}`)
	h.route(t, "t", "one", `{"api_path": "r", "http_method": "GET"}`)
	if r := h.do(t, "GET", "/r", nil); string(r.body) != "one" {
		t.Fatalf("GET /r = %d %s, want one", r.status, r.body)
	}
	// The same id again, same route: no conflict with itself.
	h.route(t, "t", "two", `{"api_path": "/r/", "http_method": "GET"}`)
	if r := h.do(t, "GET", "/r", nil); string(r.body) != "two" {
		t.Fatalf("GET /r after replace = %d %s, want two", r.status, r.body)
	}
	// Replaced by another method: the old route is gone.
	h.route(t, "t", "one", `{"api_path": "r", "http_method": "POST"}`)
	h.do(t, "GET", "/r", nil).wantError(t, http.StatusMethodNotAllowed, httptrigger.CodeMethodNotAllowed)
	if r := h.do(t, "POST", "/r", nil); string(r.body) != "one" {
		t.Fatalf("POST /r = %d %s, want one", r.status, r.body)
	}
	// A refused replacement leaves nothing behind (the engine drops the trigger).
	if err := h.register("t", "one", `{"api_path": "r"}`); code(err) != codes.InvalidArgument {
		t.Fatalf("bad replacement = %v, want invalid_argument", err)
	}
	h.do(t, "POST", "/r", nil).wantError(t, http.StatusNotFound, httptrigger.CodeNotFound)

	h.route(t, "u", "one", `{"api_path": "u", "http_method": "GET"}`)
	if err := h.s.UnregisterTrigger(t.Context(), "u"); err != nil {
		t.Fatal(err)
	}
	h.do(t, "GET", "/u", nil).wantError(t, http.StatusNotFound, httptrigger.CodeNotFound)
	// The path is free again.
	h.route(t, "u2", "two", `{"api_path": "u", "http_method": "GET"}`)
	if r := h.do(t, "GET", "/u", nil); string(r.body) != "two" {
		t.Fatalf("GET /u = %d %s, want two", r.status, r.body)
	}
	// The provider replaces a trigger id registered again without removal.
	again := engine.Trigger{ID: "u2", Type: "http", FunctionID: "one", Config: json.RawMessage(`{"api_path": "u", "http_method": "GET"}`)}
	if err := h.p.RegisterTrigger(t.Context(), again); err != nil {
		t.Fatalf("RegisterTrigger(same id, same route) = %v, want nil", err)
	}
	if r := h.do(t, "GET", "/u", nil); string(r.body) != "one" {
		t.Fatalf("GET /u = %d %s, want one", r.status, r.body)
	}
	if err := h.p.UnregisterTrigger(t.Context(), engine.Trigger{ID: "never"}); err != nil {
		t.Errorf("UnregisterTrigger(unknown) = %v, want nil", err)
	}

	// A worker that leaves takes its routes with it.
	w, err := h.e.Attach(engine.WorkerInfo{Name: "leaver"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(t.Context(), engine.Trigger{ID: "w", Type: "http", FunctionID: "one",
		Config: json.RawMessage(`{"api_path": "w", "http_method": "GET"}`)}); err != nil {
		t.Fatal(err)
	}
	if r := h.do(t, "GET", "/w", nil); r.status != 200 {
		t.Fatalf("GET /w = %d %s", r.status, r.body)
	}
	w.Close()
	poll.CheckFor(t, 5*time.Second, poll.Holds("the leaving worker's route to go", func() bool { return h.do(t, "GET", "/w", nil).status == http.StatusNotFound }))
}

func TestFunctionErrors(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	h.fn(t, "coded", func(context.Context, engine.Call) ([]byte, error) {
		return nil, &engine.Error{Code: "payment_required", Message: "card declined"}
	})
	h.fn(t, "plain", func(context.Context, engine.Call) ([]byte, error) { return nil, errors.New("boom") })
	h.fn(t, "busy", func(context.Context, engine.Call) ([]byte, error) {
		return nil, engine.Errorf(codes.Overloaded, "too busy")
	})
	h.fn(t, "down", func(context.Context, engine.Call) ([]byte, error) {
		return nil, engine.Errorf(codes.Unavailable, "down")
	})
	h.fn(t, "internal", func(context.Context, engine.Call) ([]byte, error) {
		return nil, engine.Errorf(codes.Internal, "secret detail")
	})
	for _, id := range []string{"coded", "plain", "busy", "down", "internal", "missing"} {
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
	}
	for _, tt := range []struct {
		path, code, message string
		status              int
	}{
		{"/coded", "payment_required", "card declined", 502},
		{"/plain", "handler_error", "boom", 502},
		{"/busy", httptrigger.CodeOverloaded, "too busy", 503},
		{"/down", httptrigger.CodeUnavailable, "down", 503},
		{"/internal", "internal", "internal error", 502},
		{"/missing", httptrigger.CodeFunctionNotFound, "missing", 404},
	} {
		t.Run(tt.path, func(t *testing.T) {
			msg := h.do(t, "GET", tt.path, nil).wantError(t, tt.status, tt.code)
			if !strings.Contains(msg, tt.message) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.message)
			}
		})
	}
	h.reply(t, "teapot", `{"status_code": 418, "body": "short and stout"}`)
	h.route(t, "teapot", "teapot", `{"api_path": "teapot", "http_method": "GET"}`)
	h.echo(t, "fine")
	h.route(t, "fine", "fine", `{"api_path": "fine", "http_method": "GET"}`)
	h.do(t, "GET", "/teapot", nil)
	h.do(t, "GET", "/fine", nil)
	h.do(t, "GET", "/nowhere", nil)
	want := map[int]int64{200: 1, 404: 2, 418: 1, 502: 3, 503: 2}
	if got := h.p.Stats().Responses; !maps.Equal(got, want) {
		t.Fatalf("Stats().Responses = %v, want %v", got, want)
	}
}

// workerPeer hands invocations to the test.
type workerPeer struct{ invoked chan engine.Invocation }

func (p workerPeer) Invoke(_ context.Context, inv engine.Invocation) error {
	p.invoked <- inv
	return nil
}
func (workerPeer) Cancel(string) {}
func (workerPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

// attachWorker attaches a worker session whose invocations peer hands
// to the test.
func attachWorker(t *testing.T, h *harness) (*engine.Session, workerPeer) {
	t.Helper()
	peer := workerPeer{make(chan engine.Invocation, 1)}
	w, err := h.e.Attach(engine.WorkerInfo{Name: "worker"}, peer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w, peer
}

func TestWorkerFunction(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	w, peer := attachWorker(t, h)
	if err := w.RegisterFunction("w::fn", ""); err != nil {
		t.Fatal(err)
	}
	h.route(t, "w", "w::fn", `{"api_path": "w/:id", "http_method": "PUT"}`)

	send := func() chan reply {
		ch := make(chan reply, 1)
		go func() {
			req, _ := http.NewRequest("PUT", h.srv.URL+"/w/7", strings.NewReader(`{"n":1}`))
			res, err := h.srv.Client().Do(req)
			if err != nil {
				ch <- reply{status: -1, body: []byte(err.Error())}
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			ch <- reply{res.StatusCode, res.Header, b, res.Close}
		}()
		return ch
	}
	wait := func(ch chan reply) reply {
		select {
		case r := <-ch:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
			return reply{}
		}
	}
	invoked := func() engine.Invocation {
		select {
		case inv := <-peer.invoked:
			return inv
		case <-time.After(10 * time.Second):
			t.Fatal("the worker was not invoked")
			return engine.Invocation{}
		}
	}
	ch := send()
	inv := invoked()
	var req httptrigger.Request
	if err := json.Unmarshal(inv.Payload, &req); err != nil || req.PathParams["id"] != "7" || string(req.Body) != `{"n":1}` {
		t.Fatalf("worker got %s (%v)", inv.Payload, err)
	}
	if inv.Deadline.IsZero() || time.Until(inv.Deadline) > httptrigger.DefaultTimeout {
		t.Errorf("invocation deadline = %v, want within the default timeout", inv.Deadline)
	}
	w.Result(inv.InvocationID, []byte(`{"status_code": 201, "body": {"ok": true}}`), nil)
	if r := wait(ch); r.status != 201 || string(r.body) != `{"ok": true}` {
		t.Fatalf("PUT /w/7 = %d %s, want 201 {\"ok\": true}", r.status, r.body)
	}

	// The worker leaves mid-call.
	ch = send()
	invoked()
	w.Close()
	wait(ch).wantError(t, http.StatusBadGateway, string(codes.WorkerDisconnected))
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{Timeout: 300 * time.Millisecond})
	sawDeadline := make(chan error, 1)
	h.fn(t, "slow", func(ctx context.Context, _ engine.Call) ([]byte, error) {
		timer := time.NewTimer(20 * time.Second)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			sawDeadline <- ctx.Err()
			return nil, ctx.Err()
		case <-timer.C:
			return []byte(`{"body": "late"}`), nil
		}
	})
	h.route(t, "slow", "slow", `{"api_path": "slow", "http_method": "GET"}`)
	began := time.Now()
	h.do(t, "GET", "/slow", nil).wantError(t, http.StatusGatewayTimeout, httptrigger.CodeTimeout)
	if d := time.Since(began); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %v, want about 300ms", d)
	}
	if err := <-sawDeadline; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("handler context ended with %v, want deadline exceeded", err)
	}
}

func TestClientGone(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	h.fn(t, "wait", func(ctx context.Context, _ engine.Call) ([]byte, error) {
		started <- struct{}{}
		timer := time.NewTimer(20 * time.Second)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
			return nil, ctx.Err()
		case <-timer.C:
			ended <- nil
			return nil, nil
		}
	})
	h.route(t, "wait", "wait", `{"api_path": "wait", "http_method": "GET"}`)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/wait", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := h.srv.Client().Do(req); err == nil {
			res.Body.Close()
		}
	}()
	<-started
	cancel()
	<-done
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler context ended with %v, want canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context did not end when the client went away")
	}
}

func TestResponses(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	for i, tt := range []struct {
		out, ctype, body string
		status           int
		header           http.Header
	}{
		{`{"status_code": 201, "headers": {"x-a": "1", "X-M": ["a", "b"]}, "body": {"id": 1}}`,
			"application/json", `{"id": 1}`, 201, http.Header{"X-A": {"1"}, "X-M": {"a", "b"}}},
		{`{"body": "hello"}`, "text/plain; charset=utf-8", "hello", 200, nil},
		{`{"body": "<p>x</p>", "headers": {"content-type": "text/html"}}`, "text/html", "<p>x</p>", 200, nil},
		{`{"body": {"a": 1}, "headers": {"Content-Type": "application/problem+json"}, "status_code": 400}`,
			"application/problem+json", `{"a": 1}`, 400, nil},
		{`{"body": [1, 2]}`, "application/json", `[1, 2]`, 200, nil},
		{`{"body": 42}`, "application/json", `42`, 200, nil},
		{`{"body": false}`, "application/json", `false`, 200, nil},
		{`{"body": ""}`, "", "", 200, nil},
		{`{"body": null, "status_code": null}`, "", "", 200, nil},
		{`{}`, "", "", 200, nil},
		{`{"status_code": 204, "body": "ignored"}`, "text/plain; charset=utf-8", "", 204, nil},
		{`{"status_code": 599}`, "", "", 599, nil},
		{`{"headers": {"content-length": "999", "connection": "close", "transfer-encoding": "gzip"}, "body": "hi"}`,
			"text/plain; charset=utf-8", "hi", 200, http.Header{"Transfer-Encoding": nil}},
	} {
		id := fmt.Sprintf("ok%d", i)
		h.reply(t, id, tt.out)
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
		t.Run(tt.out, func(t *testing.T) {
			r := h.do(t, "GET", "/"+id, nil)
			if r.status != tt.status || string(r.body) != tt.body {
				t.Errorf("answer = %d %q, want %d %q", r.status, r.body, tt.status, tt.body)
			}
			if r.close {
				t.Errorf("the connection is closed after the answer")
			}
			if got := r.header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", got, tt.ctype)
			}
			for k, want := range tt.header {
				if got := r.header.Values(k); len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
	// A Go function can answer with a Response.
	h.fn(t, "typed", func(context.Context, engine.Call) ([]byte, error) {
		return json.Marshal(httptrigger.Response{StatusCode: 202, Headers: map[string]string{"X-R": "1"}, Body: map[string]bool{"ok": true}})
	})
	h.route(t, "typed", "typed", `{"api_path": "typed", "http_method": "GET"}`)
	if r := h.do(t, "GET", "/typed", nil); r.status != 202 || string(r.body) != `{"ok":true}` || r.header.Get("X-R") != "1" ||
		r.header.Get("Content-Type") != "application/json" {
		t.Errorf("typed answer = %d %v %s", r.status, r.header, r.body)
	}
	for i, out := range []string{
		``, `null`, `"str"`, `[1]`, `42`, `{"status_code": 99}`, `{"status_code": 101}`, `{"status_code": 600}`,
		`{"status_code": "200"}`, `{"status_code": 200.5}`, `{"headers": "x"}`, `{"headers": {"bad name": "x"}}`,
		`{"headers": {"": "x"}}`, `{"headers": {"x": "a\nb"}}`, `{"headers": {"x": "a\r\nSet-Cookie: evil"}}`,
		`{"headers": {"x": 1}}`, `{"headers": {"x": null}}`, `{"headers": {"x": ["a", 1]}}`,
	} {
		id := fmt.Sprintf("bad%d", i)
		h.reply(t, id, out)
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
		t.Run("invalid "+out, func(t *testing.T) {
			h.do(t, "GET", "/"+id, nil).wantError(t, http.StatusBadGateway, httptrigger.CodeInvalidResponse)
		})
	}
}

func TestCondition(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	calls := h.echo(t, "echo")
	var condPayload atomic.Pointer[string]
	h.fn(t, "cond", func(_ context.Context, c engine.Call) ([]byte, error) {
		s := string(c.Payload)
		condPayload.Store(&s)
		var req httptrigger.Request
		if err := json.Unmarshal(c.Payload, &req); err != nil {
			return nil, err
		}
		if req.QueryParams["allow"] == "yes" {
			return []byte(`true`), nil
		}
		if req.QueryParams["allow"] == "null" {
			return []byte(`null`), nil
		}
		return []byte(` false `), nil
	})
	h.route(t, "guarded", "echo", `{"api_path": "g/:id", "http_method": "POST", "condition_function_id": "cond"}`)
	h.route(t, "unguarded", "echo", `{"api_path": "g2", "http_method": "GET", "condition_function_id": "nope::missing"}`)

	r := h.do(t, "POST", "/g/1?allow=no", strings.NewReader(`{"x":1}`))
	r.wantError(t, http.StatusUnprocessableEntity, httptrigger.CodeConditionNotMet)
	var env struct {
		Skipped bool `json:"skipped"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || !env.Skipped {
		t.Errorf("422 body %s has no \"skipped\": true", r.body)
	}
	if calls.Load() != 0 {
		t.Errorf("function called although the condition returned false")
	}
	for _, q := range []string{"yes", "null"} {
		got := h.do(t, "POST", "/g/1?allow="+q, strings.NewReader(`{"x":1}`)).request(t)
		if string(got.Body) != `{"x":1}` {
			t.Errorf("allow=%s: body = %s", q, got.Body)
		}
		// The condition saw the same payload as the function.
		want, _ := json.Marshal(got)
		var a, b any
		_ = json.Unmarshal([]byte(*condPayload.Load()), &a)
		_ = json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("condition payload %s, function payload %s", *condPayload.Load(), want)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("function called %d times, want 2", calls.Load())
	}
	h.do(t, "GET", "/g2", nil).wantError(t, http.StatusNotFound, httptrigger.CodeFunctionNotFound)
}

func TestConcurrentRequestsAndRoutes(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	h.echo(t, "echo")
	h.route(t, "stable", "echo", `{"api_path": "stable/:n", "http_method": "GET"}`)

	stop := make(chan struct{})
	var churn sync.WaitGroup
	for i := range 4 {
		churn.Go(func() {
			id := fmt.Sprintf("churn%d", i)
			cfg := fmt.Sprintf(`{"api_path": "churn/%d/:x", "http_method": "GET"}`, i)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := h.register(id, "echo", cfg); err != nil {
					t.Errorf("RegisterTrigger(%s) = %v", id, err)
					return
				}
				// A conflicting route is refused, even while the table changes.
				if err := h.register(id+"-dup", "echo", fmt.Sprintf(`{"api_path": "churn/%d/:y", "http_method": "GET"}`, i)); code(err) != codes.Conflict {
					t.Errorf("duplicate of %s = %v, want conflict", id, err)
				}
				if err := h.s.UnregisterTrigger(context.Background(), id); err != nil {
					t.Errorf("UnregisterTrigger(%s) = %v", id, err)
					return
				}
			}
		})
	}
	var reqs sync.WaitGroup
	var churned200 atomic.Int64
	for i := range 8 {
		reqs.Go(func() {
			for j := range 40 {
				res, err := h.srv.Client().Get(fmt.Sprintf("%s/stable/%d", h.srv.URL, j))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					t.Errorf("GET /stable/%d = %d during route changes", j, res.StatusCode)
				}
				res, err = h.srv.Client().Get(fmt.Sprintf("%s/churn/%d/x", h.srv.URL, i%4))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case 200:
					churned200.Add(1)
				case 404:
				default:
					t.Errorf("GET /churn = %d, want 200 or 404", res.StatusCode)
				}
			}
		})
	}
	reqs.Wait()
	close(stop)
	churn.Wait()
	t.Logf("%d churned requests answered 200", churned200.Load())
}

// A trigger's metadata reaches its function (and its condition function)
// with every request.
func TestTriggerMetadata(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	seen := make(chan string, 2)
	h.fn(t, "meta::cond", func(_ context.Context, c engine.Call) ([]byte, error) {
		seen <- "cond " + string(c.Metadata)
		return []byte("true"), nil
	})
	h.fn(t, "meta::fn", func(_ context.Context, c engine.Call) ([]byte, error) {
		seen <- "fn " + string(c.Metadata)
		return []byte(`{"status_code":204}`), nil
	})
	err := h.s.RegisterTrigger(context.Background(), engine.Trigger{ID: "m", Type: httptrigger.TriggerType, FunctionID: "meta::fn",
		Config:   json.RawMessage(`{"api_path":"meta","http_method":"GET","condition_function_id":"meta::cond"}`),
		Metadata: json.RawMessage(`{"team":"a"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.do(t, "GET", "/meta", nil); r.status != http.StatusNoContent {
		t.Fatalf("status %d", r.status)
	}
	for _, want := range []string{`cond {"team":"a"}`, `fn {"team":"a"}`} {
		if got := <-seen; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// TestMiddleware: a route's middleware functions run in order with the
// request (no body); continue goes on, respond answers without calling the
// function, and a failure or a result of any other shape fails closed.
func TestMiddleware(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	calls := h.echo(t, "echo")
	var order []string
	var mu sync.Mutex
	mw := func(name, result string) {
		h.fn(t, name, func(_ context.Context, c engine.Call) ([]byte, error) {
			var in httptrigger.MiddlewareInput
			if err := json.Unmarshal(c.Payload, &in); err != nil || in.Phase != "preHandler" || in.Request.Method != "POST" || in.Request.PathParams["id"] != "7" || in.Context == nil {
				t.Errorf("middleware %s input %s", name, c.Payload)
			}
			if strings.Contains(string(c.Payload), "secret-body") {
				t.Errorf("middleware %s saw the body: %s", name, c.Payload)
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			if result == "fail" {
				return nil, errors.New("middleware broke")
			}
			if in.Request.Headers["authorization"] == "" && name == "auth" {
				return []byte(`{"action":"respond","response":{"status_code":401,"body":{"error":"who are you"},"headers":{"www-authenticate":"Bearer"}}}`), nil
			}
			return []byte(result), nil
		})
	}
	mw("log", `{"action":"continue"}`)
	mw("auth", `{"action":"continue"}`)
	mw("bad", `{"action":"maybe"}`)
	mw("badrespond", `{"action":"respond","response":{"status_code":"x"}}`)
	mw("broken", "fail")
	h.route(t, "guarded", "echo", `{"api_path": "m/:id", "http_method": "POST", "middleware_function_ids": ["log", "auth"]}`)
	h.route(t, "bad", "echo", `{"api_path": "bad/:id", "http_method": "POST", "middleware_function_ids": ["log", "bad"]}`)
	h.route(t, "badrespond", "echo", `{"api_path": "badrespond/:id", "http_method": "POST", "middleware_function_ids": ["badrespond"]}`)
	h.route(t, "broken", "echo", `{"api_path": "broken/:id", "http_method": "POST", "middleware_function_ids": ["broken"]}`)
	h.route(t, "missing", "echo", `{"api_path": "missing/:id", "http_method": "POST", "middleware_function_ids": ["nope::missing"]}`)

	r := h.do(t, "POST", "/m/7", strings.NewReader(`"secret-body"`))
	if r.status != 401 || !strings.Contains(string(r.body), "who are you") || r.header.Get("Www-Authenticate") != "Bearer" {
		t.Fatalf("respond: %d %s %v", r.status, r.body, r.header)
	}
	if calls.Load() != 0 {
		t.Fatal("the function ran although the middleware responded")
	}
	got := h.do(t, "POST", "/m/7", strings.NewReader(`"secret-body"`), "Authorization", "Bearer x").request(t)
	if string(got.Body) != `"secret-body"` || calls.Load() != 1 {
		t.Fatalf("continue: body %s, %d calls", got.Body, calls.Load())
	}
	mu.Lock()
	if strings.Join(order, ",") != "log,auth,log,auth" {
		t.Errorf("middleware order %v", order)
	}
	mu.Unlock()
	h.do(t, "POST", "/bad/7", strings.NewReader(`1`)).wantError(t, http.StatusBadGateway, httptrigger.CodeInvalidResponse)
	h.do(t, "POST", "/badrespond/7", strings.NewReader(`1`)).wantError(t, http.StatusBadGateway, httptrigger.CodeInvalidResponse)
	h.do(t, "POST", "/broken/7", strings.NewReader(`1`)).wantError(t, http.StatusBadGateway, "handler_error")
	h.do(t, "POST", "/missing/7", strings.NewReader(`1`)).wantError(t, http.StatusNotFound, httptrigger.CodeFunctionNotFound)
	if calls.Load() != 1 {
		t.Fatalf("the function ran %d times: a failing middleware let a request through", calls.Load())
	}
}

// TestFunctionFormats: an HTTP trigger's call is held to its function's
// request_format like any other: a request whose body breaks it is
// refused with 400 invalid_argument naming the pointer, and the worker
// never runs.
func TestFunctionFormats(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{})
	w, peer := attachWorker(t, h)
	format := `{"type":"object","properties":{"body":{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}}}`
	if err := w.RegisterFunctionSpec("w::fn", engine.FunctionSpec{RequestFormat: json.RawMessage(format)}); err != nil {
		t.Fatal(err)
	}
	h.route(t, "w", "w::fn", `{"api_path": "w", "http_method": "POST"}`)
	msg := h.do(t, "POST", "/w", strings.NewReader(`{"n":"one"}`)).wantError(t, http.StatusBadRequest, httptrigger.CodeBadRequest)
	if !strings.Contains(msg, "/body/n: expected integer, got string") {
		t.Errorf("message = %q, want the pointer and rule", msg)
	}
	select {
	case inv := <-peer.invoked:
		t.Fatalf("the worker ran for a refused request: %s", inv.Payload)
	default:
	}
}
