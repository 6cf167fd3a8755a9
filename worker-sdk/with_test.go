package trine_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/streammodule"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestWorkerOptionsReachTheEngine checks that WithHeader, WithToken and
// WithDialer shape the connection the engine sees, and that WithMetadata,
// WithRequestFormat and WithResponseFormat arrive in
// engine::functions::info.
func TestWorkerOptionsReachTheEngine(t *testing.T) {
	var (
		mu      sync.Mutex
		headers []map[string]string
	)
	s := enginetest.Start(t, engine.Config{}, grpcserver.Config{Access: &engine.Access{AuthFunctionID: "test::auth"}})
	err := s.Engine.RegisterFunction("test::auth", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var in engine.AuthInput
		if err := json.Unmarshal(c.Payload, &in); err != nil {
			return nil, err
		}
		mu.Lock()
		headers = append(headers, in.Headers)
		mu.Unlock()
		if in.Headers["authorization"] != "Bearer secret" {
			return nil, engine.Errorf(codes.Unauthorized, "no token")
		}
		return []byte(`{"allowed_functions":["engine::functions::info"]}`), nil
	}))
	if err != nil {
		t.Fatal(err)
	}

	// Without the token the auth function refuses the connection.
	bare := trine.RegisterWorker(s.Addr, trine.WithReconnectBackoff(20*time.Millisecond, 100*time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	if err := bare.Connect(ctx); err == nil {
		t.Error("a worker without WithToken connected")
	}
	cancel()
	_ = bare.Close()

	var dials atomic.Int32
	w := connect(t, s.Addr,
		trine.WithToken("secret"),
		trine.WithHeader(http.Header{"X-Tenant": {"acme", "beta"}, "X-Region": {"eu"}}),
		trine.WithDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}))
	if dials.Load() == 0 {
		t.Error("WithDialer's dialer was not used")
	}
	mu.Lock()
	last := headers[len(headers)-1]
	mu.Unlock()
	if last["x-tenant"] != "acme, beta" || last["x-region"] != "eu" || last["authorization"] != "Bearer secret" {
		t.Errorf("the auth function saw headers %v", last)
	}

	schema := map[string]any{"type": "object", "required": []string{"a"}}
	if err := w.RegisterFunction(t.Context(), "opts::fn", func(context.Context, json.RawMessage) (any, error) { return nil, nil },
		trine.WithDescription("described"), trine.WithMetadata(map[string]string{"team": "core"}),
		trine.WithRequestFormat(schema), trine.WithResponseFormat(`{"type":"number"}`)); err != nil {
		t.Fatal(err)
	}
	info, err := trine.Call[map[string]json.RawMessage](t.Context(), w, "engine::functions::info", map[string]string{"function_id": "opts::fn"})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"description": `"described"`, "metadata": `{"team":"core"}`,
		"request_format": `{"required":["a"],"type":"object"}`, "response_format": `{"type":"number"}`,
	} {
		if got := string(info[k]); got != want {
			t.Errorf("functions::info %s = %s, want %s", k, got, want)
		}
	}

	// An option value that does not marshal refuses the registration.
	err = w.RegisterFunction(t.Context(), "opts::bad", func(context.Context, json.RawMessage) (any, error) { return nil, nil },
		trine.WithMetadata(func() {}))
	wantCode(t, err, trine.CodeInvalidArgument)
	err = w.RegisterFunction(t.Context(), "opts::bad", func(context.Context, json.RawMessage) (any, error) { return nil, nil },
		trine.WithRequestFormat("{not json"))
	wantCode(t, err, trine.CodeInvalidArgument)
}

// TestWithHeaderRefusesWhatGRPCCannotCarry checks that a header gRPC
// metadata cannot carry fails at Connect, instead of being dropped.
func TestWithHeaderRefusesWhatGRPCCannotCarry(t *testing.T) {
	s := startEngine(t)
	for _, h := range []http.Header{
		{"Grpc-Timeout": {"1S"}},
		{"X-Data-Bin": {"AAA"}},
		{"X Space": {"v"}},
		{"X-Ok": {"line\nbreak"}},
		{"X-Ok": {"caf\u00e9"}},
		{"X-Big": {strings.Repeat("a", trine.MaxHeaderBytes)}},
	} {
		w := trine.RegisterWorker(s.Addr, trine.WithHeader(h))
		wantCode(t, w.Connect(t.Context()), trine.CodeInvalidArgument)
		_ = w.Close()
	}
	for _, tok := range []string{"line\nbreak", "caf\u00e9", strings.Repeat("t", 20<<20)} {
		w := trine.RegisterWorker(s.Addr, trine.WithToken(tok))
		wantCode(t, w.Connect(t.Context()), trine.CodeInvalidArgument)
		_ = w.Close()
	}
}

// TestBaggageFlowsDownCalls checks that ContextWithBaggage sets the
// baggage a call carries, that a handler's own calls carry the baggage of
// the invocation they serve, and that an oversize header is refused before
// it is sent.
func TestBaggageFlowsDownCalls(t *testing.T) {
	s := startEngine(t)
	w := connect(t, s.Addr)
	get := func(ctx context.Context) (string, error) {
		r, err := trine.Call[struct{ Value *string }](ctx, w, "engine::baggage::get", map[string]string{"key": "tenant"})
		if err != nil || r.Value == nil {
			return "", err
		}
		return *r.Value, nil
	}
	if err := w.RegisterFunction(t.Context(), "bag::outer", func(ctx context.Context, _ json.RawMessage) (any, error) {
		inv, _ := trine.Invocation(ctx)
		inner, err := get(ctx) // a call from the handler: the invocation's baggage
		return map[string]string{"seen": inv.Baggage, "inner": inner}, err
	}); err != nil {
		t.Fatal(err)
	}

	ctx := trine.ContextWithBaggage(t.Context(), "tenant=acme,user=u1")
	if v, err := get(ctx); err != nil || v != "acme" {
		t.Fatalf("baggage::get = %q, %v", v, err)
	}
	r, err := trine.Call[map[string]string](ctx, w, "bag::outer", nil)
	if err != nil || r["seen"] != "tenant=acme,user=u1" || r["inner"] != "acme" {
		t.Fatalf("bag::outer = %v, %v", r, err)
	}
	if v, err := get(t.Context()); err != nil || v != "" {
		t.Fatalf("a call without baggage: %q, %v", v, err)
	}
	_, err = w.Trigger(trine.ContextWithBaggage(t.Context(), "k="+strings.Repeat("v", trine.MaxBaggageBytes)), "bag::outer", nil)
	wantCode(t, err, trine.CodeInvalidArgument)
}

// TestSubscribeWithTLSAndToken subscribes to a gateway that serves wss://
// and admits by JWT: WithTLS trusts its certificate and WithToken sends the
// token as the trine_token cookie.
func TestSubscribeWithTLSAndToken(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.New(jwtauth.Config{HMACSecretFile: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	s := newGWStackServer(t, gateway.Config{Tokens: v}, streammodule.Config{}, true)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: s.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS12}

	if _, err := trine.Subscribe(t.Context(), s.url, "s", "g", trine.WithToken(tok)); err == nil {
		t.Error("a subscription without WithTLS trusted the test certificate")
	}
	if _, err := trine.Subscribe(t.Context(), s.url, "s", "g", trine.WithTLS(cfg)); err == nil {
		t.Error("a subscription without a token was admitted")
	}
	for _, bad := range []string{"a b", "a;b", "a,b", `a"b`, "caf\u00e9", "a\\b"} {
		_, err := trine.Subscribe(t.Context(), s.url, "s", "g", trine.WithTLS(cfg), trine.WithToken(bad))
		wantCode(t, err, trine.CodeInvalidArgument)
	}
	s.call(t, "stream::set", map[string]any{"stream_name": "s", "group_id": "g", "item_id": "a", "data": 1})
	sub := subscribe(t, s.url, "s", "g", trine.WithTLS(cfg), trine.WithToken(tok), trine.WithItem("a"))
	if ev := next(t, sub); ev.Type != "sync" || string(ev.Data) != "1" {
		t.Fatalf("first frame %+v", ev)
	}
}
