package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// iiiCall sends one invokefunction over an iii socket and returns the
// invocationresult's error code ("" on success).
func iiiCall(t *testing.T, ctx context.Context, ws *websocket.Conn, fn string) string {
	t.Helper()
	msg := `{"type":"invokefunction","invocation_id":"c1","function_id":"` + fn + `","data":{}}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m struct {
			Type  string `json:"type"`
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &m)
		if m.Type != "invocationresult" {
			continue
		}
		if m.Error != nil {
			return m.Error.Code + ": " + m.Error.Message
		}
		return ""
	}
}

// YAML listeners open extra iii listeners with iii's rbac block; the
// flags give the main one a policy. Admission fails closed (401 while the
// auth function is not even registered), calls are decided per policy,
// and a trusted listener stays trusted.
func TestEngineListeners(t *testing.T) {
	t.Parallel()
	conf := filepath.Join(t.TempDir(), "trine.yaml")
	if err := os.WriteFile(conf, []byte(`listeners:
  - protocol: iii
    addr: 127.0.0.1:0
    rbac:
      auth_function_id: test::auth
      expose_functions:
        - match: "api::*"
  - protocol: grpc
    addr: 127.0.0.1:0
    rbac:
      auth_function_id: test::auth
      expose_functions:
        - match: "api::*"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--config", conf)...)
	m := regexp.MustCompile(` iii/1=(\S+)`).FindStringSubmatch(e.stdout.String())
	if m == nil {
		t.Fatalf("no extra listener in %q", e.stdout)
	}
	public := "ws://" + m[1]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dial := func(url, token string) (*websocket.Conn, *http.Response, error) {
		h := http.Header{}
		if token != "" {
			h.Set("X-Token", token)
		}
		return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	}
	if _, res, err := dial(public, "t1"); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no auth function registered yet: %v %v, want 401", res, err)
	}

	w := connectWorker(t, e.grpc)
	if err := w.RegisterFunction(ctx, "test::auth", func(_ context.Context, in json.RawMessage) (any, error) {
		var a struct {
			Headers map[string]string `json:"headers"`
		}
		_ = json.Unmarshal(in, &a)
		if a.Headers["x-token"] != "t1" && a.Headers["authorization"] != "Bearer t1" {
			return nil, &trine.Error{Code: "unauthorized", Message: "bad token"}
		}
		return map[string]any{"context": map[string]string{"user": "u1"}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"api::echo", "private::x"} {
		if err := w.RegisterFunction(ctx, id, func(context.Context, json.RawMessage) (any, error) { return "ok", nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, res, err := dial(public, "wrong"); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a bad token: %v %v, want 401", res, err)
	}
	ws, _, err := dial(public, "t1")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if got := iiiCall(t, ctx, ws, "api::echo"); got != "" {
		t.Fatalf("exposed function: %s", got)
	}
	if got := iiiCall(t, ctx, ws, "private::x"); !strings.HasPrefix(got, "FORBIDDEN: ") || !strings.Contains(got, "not exposed") {
		t.Fatalf("private function: %q", got)
	}
	// The main listener is trusted: everything may be called.
	trusted, _, err := dial("ws://"+e.iii, "")
	if err != nil {
		t.Fatal(err)
	}
	defer trusted.CloseNow()
	if got := iiiCall(t, ctx, trusted, "private::x"); got != "" {
		t.Fatalf("trusted listener: %s", got)
	}

	// The gRPC listener with the same policy: the token arrives as
	// authorization metadata.
	g := regexp.MustCompile(` grpc/1=(\S+)`).FindStringSubmatch(e.stdout.String())
	if g == nil {
		t.Fatalf("no extra gRPC listener in %q", e.stdout)
	}
	noToken := trine.RegisterWorker(g[1])
	nctx, ncancel := context.WithTimeout(ctx, 2*time.Second)
	if err := noToken.Connect(nctx); err == nil {
		t.Fatal("a worker without a token connected")
	}
	ncancel()
	noToken.Close()
	gw := trine.RegisterWorker(g[1], trine.WithToken("t1"))
	defer gw.Close()
	if err := gw.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Trigger(ctx, "api::echo", nil); err != nil {
		t.Fatalf("exposed function over gRPC: %v", err)
	}
	if _, err := gw.Trigger(ctx, "private::x", nil); !errors.Is(err, trine.ErrForbidden) {
		t.Fatalf("private function over gRPC: %v", err)
	}
	for fn, want := range map[string]int{"api::echo": 0, "private::x": 1} {
		r := runTrine(t, testEnv(), "", "trigger", "--engine", g[1], "--token", "t1", fn)
		if r.code != want || (want == 1 && !strings.Contains(r.stderr, `"code":"forbidden"`)) {
			t.Errorf("trine trigger --token %s: exit %d, %s", fn, r.code, r.stderr)
		}
	}
	if r := runTrine(t, testEnv(), "", "trigger", "--engine", g[1], "api::echo"); r.code != 1 || !strings.Contains(r.stderr, `"code":"unauthorized"`) {
		t.Errorf("trine trigger without a token: exit %d, %s", r.code, r.stderr)
	}

	// The flags make the main listener an exposing one without an auth
	// function.
	f := startEngine(t, trineBin, testEnv(), engineArgs(t, "--iii-expose-functions", "api::*,engine::health::*")...)
	fw, _, err := dial("ws://"+f.iii, "")
	if err != nil {
		t.Fatal(err)
	}
	defer fw.CloseNow()
	if got := iiiCall(t, ctx, fw, "engine::health::check"); got != "" {
		t.Fatalf("exposed built-in: %s", got)
	}
	if got := iiiCall(t, ctx, fw, "engine::functions::list"); !strings.HasPrefix(got, "FORBIDDEN: ") {
		t.Fatalf("a built-in that is not exposed: %q", got)
	}
}

// Bad listeners are usage errors that name the mistake.
func TestEngineListenersErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ yaml, want string }{
		{"listeners:\n  - protocol: iii\n    addr: 127.0.0.1:0\n    rbac:\n      auth_function: x\n", "auth_function"},
		{"listeners:\n  - protocol: http\n    addr: 127.0.0.1:0\n", `protocol "http"`},
		{"listeners:\n  - protocol: iii\n", `addr ""`},
		{"listeners:\n  - protocol: iii\n    addr: 127.0.0.1:0\n    rbac:\n      expose_functions:\n        - {}\n", "match pattern"},
		{"listeners: nope\n", "listeners"},
	} {
		conf := filepath.Join(t.TempDir(), "trine.yaml")
		if err := os.WriteFile(conf, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runTrine(t, testEnv(), "", engineArgs(t, "--config", conf)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, %q; want 2 naming %q", c.yaml, r.code, r.stderr, c.want)
		}
	}
	r := runTrine(t, testEnv(), "", "gateway", "--config", writeTemp(t, "listeners: []\n"))
	if r.code != 2 || !strings.Contains(r.stderr, `unknown key "listeners"`) {
		t.Errorf("trine gateway with listeners: exit %d, %q", r.code, r.stderr)
	}
}

func writeTemp(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// trine token signs what an engine with --stream-jwt-hmac-secret-file
// admits; the streams claim decides the joins; no token is 401.
func TestBrowserTokens(t *testing.T) {
	t.Parallel()
	secret := writeTemp(t, "0123456789abcdef0123456789abcdef\n")
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--stream-jwt-hmac-secret-file", secret, "--stream-jwt-audience", "app")...)
	r := runTrine(t, testEnv(), "", "token", "--secret-file", secret, "--sub", "alice", "--streams", "chat/*", "--aud", "app", "--ttl", "10m")
	if r.code != 0 {
		t.Fatalf("trine token: %d %s", r.code, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sse := func(path string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.stream+path, nil)
		req.Header.Set("Accept", "text/event-stream")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode == 200 {
			b := make([]byte, 256)
			n, _ := res.Body.Read(b)
			if strings.Contains(string(b[:n]), `"unauthorized"`) {
				return 403
			}
		}
		return res.StatusCode
	}
	for path, want := range map[string]int{
		"/stream/chat/room": 401, "/stream/chat/room?token=" + tok: 200, "/stream/todos/x?token=" + tok: 403,
	} {
		if got := sse(path); got != want {
			t.Errorf("SSE %s: %d, want %d", path, got, want)
		}
	}
	other := runTrine(t, testEnv(), "", "token", "--secret-file", secret, "--aud", "another")
	if got := sse("/stream/chat/room?token=" + strings.TrimSpace(other.stdout)); got != 401 {
		t.Errorf("a token for another audience: %d", got)
	}
	if r := runTrine(t, testEnv(), "", "token", "--secret-file", writeTemp(t, "short")); r.code != 2 {
		t.Errorf("trine token with a short secret: exit %d", r.code)
	}
	if r := runTrine(t, testEnv(), "", engineArgs(t, "--stream-jwt-hmac-secret-file", secret, "--stream-auth-function", "x")...); r.code != 1 || !strings.Contains(r.stderr, "exclude each other") {
		t.Errorf("JWT and an auth function: exit %d %s", r.code, r.stderr)
	}
}

// --nats-token generate: the embedded server requires the printed token
// of other processes; a gateway with it serves, one without exits 1.
func TestEmbeddedNATSToken(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--nats-token", "generate")...)
	m := regexp.MustCompile(` nats-token=([0-9a-f]{48})`).FindStringSubmatch(e.stdout.String())
	if m == nil {
		t.Fatalf("no token on the start line: %s", e.stdout)
	}
	addr := strings.TrimPrefix(e.nats, "embedded,")
	r := runTrine(t, testEnv(), "", "gateway", "--stream-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--engine", e.grpc,
		"--nats-url", "nats://"+addr, "--nats-connect-timeout", "1s")
	if r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "authorization") {
		t.Fatalf("a gateway without the token: exit %d, %s", r.code, r.stderr)
	}
	_, httpAddr := startGateway(t, "--engine", e.grpc, "--nats-url", "nats://"+m[1]+"@"+addr)
	poll.CheckFor(t, 20*time.Second, poll.Holds("the gateway's readiness", func() bool { code, _ := get(t, httpAddr+"/readyz"); return code == 200 }))
}

// A listener with tokens_file admits workers by static token (the file
// holds digests only) and reloads it on SIGHUP.
func TestTokensFileListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	sum := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	writeTokens := func(toks ...string) {
		var b strings.Builder
		b.WriteString("tokens:\n")
		for _, tok := range toks {
			b.WriteString("  - sha256: " + sum(tok) + "\n    name: " + tok + "\n    allowed_functions: [\"engine::health::check\"]\n")
		}
		if err := os.WriteFile(tokens+".tmp", []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tokens+".tmp", tokens); err != nil {
			t.Fatal(err)
		}
	}
	writeTokens("alpha")
	conf := writeTemp(t, "listeners:\n  - protocol: grpc\n    addr: 127.0.0.1:0\n    tokens_file: "+tokens+"\n")
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--config", conf)...)
	addr := regexp.MustCompile(` grpc/1=(\S+)`).FindStringSubmatch(e.stdout.String())[1]
	call := func(tok, fn string) result {
		return runTrine(t, testEnv(), "", "trigger", "--engine", addr, "--token", tok, fn)
	}
	if r := call("alpha", "engine::health::check"); r.code != 0 {
		t.Fatalf("a known token: %d %s", r.code, r.stderr)
	}
	if r := call("alpha", "engine::functions::list"); r.code != 1 || !strings.Contains(r.stderr, "forbidden") {
		t.Fatalf("a function the token does not grant: %d %s", r.code, r.stderr)
	}
	if r := call("beta", "engine::health::check"); r.code != 1 || !strings.Contains(r.stderr, "unauthorized") {
		t.Fatalf("an unknown token: %d %s", r.code, r.stderr)
	}
	writeTokens("beta")
	e.signal(t, syscall.SIGHUP)
	poll.CheckFor(t, 10*time.Second, poll.Holds("the reload", func() bool { return strings.Contains(e.stderr.String(), "tokens file "+tokens+" reloaded") }))
	if r := call("beta", "engine::health::check"); r.code != 0 {
		t.Fatalf("a token added by the reload: %d %s", r.code, r.stderr)
	}
	if r := call("alpha", "engine::health::check"); r.code != 1 {
		t.Fatalf("a token the reload removed: %d %s", r.code, r.stderr)
	}
	if r := runTrine(t, testEnv(), "", engineArgs(t, "--config", writeTemp(t, "listeners:\n  - protocol: grpc\n    addr: 127.0.0.1:0\n    tokens_file: "+filepath.Join(dir, "none")+"\n"))...); r.code != 1 || !strings.Contains(r.stderr, "tokens file") {
		t.Fatalf("a missing tokens file: exit %d %s", r.code, r.stderr)
	}
}

// --http-cors-origins answers preflights of http triggers for those
// origins only; without it no CORS header is sent.
func TestHTTPCORS(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--http-cors-origins", "http://app.example", "--http-cors-credentials", "on")...)
	plain := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
	do := func(base, method, origin string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), method, base+"/orders", nil)
		req.Header.Set("Origin", origin)
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "content-type")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := do(e.http, http.MethodOptions, "http://app.example")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "http://app.example" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") || res.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		res.Header.Get("Access-Control-Max-Age") != "600" {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	if res := do(e.http, http.MethodOptions, "http://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("another origin's preflight: %v", res.Header)
	}
	if res := do(e.http, http.MethodGet, "http://app.example"); res.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("a cross-origin request: %v", res.Header)
	}
	if res := do(plain.http, http.MethodOptions, "http://app.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS without --http-cors-origins: %v", res.Header)
	}
	if r := runTrine(t, testEnv(), "", engineArgs(t, "--http-cors-origins", "*", "--http-cors-credentials", "on")...); r.code != 2 {
		t.Fatalf("credentials with *: exit %d", r.code)
	}
}
