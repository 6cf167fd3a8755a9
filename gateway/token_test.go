package gateway_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/streammodule"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// tokenStack is a stack whose gateway admits by HS256 tokens.
func tokenStack(t *testing.T) *stack {
	t.Helper()
	return newStack(t, gateway.Config{Tokens: verifier(t)}, streammodule.Config{})
}

// verifier verifies HS256 tokens signed with testSecret.
func verifier(t *testing.T) *jwtauth.Verifier {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.New(jwtauth.Config{HMACSecretFile: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func token(t *testing.T, sub string, ttl time.Duration, streams ...string) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix(), "role": "reader"}
	if streams != nil {
		c["streams"] = streams
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func status(t *testing.T, s *stack, path string, h http.Header) int {
	t.Helper()
	_, res, err := websocket.Dial(t.Context(), s.wsURL(path), &websocket.DialOptions{HTTPHeader: h})
	if err == nil {
		return http.StatusSwitchingProtocols
	}
	if res == nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	return res.StatusCode
}

// Without a valid token nothing connects; a token in the query or in the
// cookie does, and its streams claim decides every join.
func TestTokens(t *testing.T) {
	s := tokenStack(t)
	good := token(t, "alice", time.Hour, "chat/*")
	for name, c := range map[string]struct {
		path string
		h    http.Header
		want int
	}{
		"no token":     {"/", nil, 401},
		"bad token":    {"/?token=abc", nil, 401},
		"expired":      {"/?token=" + token(t, "alice", -time.Hour), nil, 401},
		"query":        {"/?token=" + good, nil, 101},
		"cookie":       {"/", http.Header{"Cookie": {"trine_token=" + good}}, 101},
		"SSE no token": {"/stream/chat/a", http.Header{"Accept": {"text/event-stream"}}, 401},
	} {
		if got := status(t, s, c.path, c.h); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
	m := s.dial(t, "/?token="+good, nil)
	m.send(join("a", "chat", "room-1"))
	must(t, m.read().kind() == "sync", "a join the streams claim allows")
	m.send(join("b", "todos", "x"))
	f := m.read()
	must(t, f.kind() == "unauthorized" && *f.SubscriptionID == "b", "a join outside the streams claim: %s", f.Raw)
	g := s.dial(t, groupPath("todos", "x", "token="+good), nil)
	must(t, g.read().kind() == "unauthorized", "a group socket outside the streams claim")
	must(t, g.closed() == websocket.StatusPolicyViolation, "closed with %v", g.err)
	sse := s.sse(t, groupPath("chat", "b", "token="+good), nil)
	_, f = sse.next()
	must(t, f.kind() == "sync", "SSE with a token: %s", f.Raw)
}

// At exp the socket closes with 4001, unless an auth frame brought a fresh
// token for the same subject; a narrower fresh token ends the
// subscriptions it does not allow.
func TestTokenExpiryAndRefresh(t *testing.T) {
	s := tokenStack(t)
	short := s.dial(t, "/?token="+token(t, "alice", 1500*time.Millisecond), nil)
	must(t, short.closed() == gateway.CloseTokenExpired, "an expiring socket closed with %v", short.err)

	c := s.dial(t, "/?token="+token(t, "alice", 1500*time.Millisecond), nil)
	c.send(join("t", "todos", "x"))
	must(t, c.read().kind() == "sync", "join")
	c.send(map[string]any{"type": "auth", "data": map[string]any{"token": token(t, "bob", time.Hour)}})
	f := c.read()
	must(t, f.Type == "error" && f.Code == "unauthorized" && strings.Contains(f.Message, "same sub"), "another subject: %s", f.Raw)
	c.send(map[string]any{"type": "auth", "data": map[string]any{"token": "garbage"}})
	f = c.read()
	must(t, f.Type == "error" && f.Code == "unauthorized", "a bad token: %s", f.Raw)
	c.send(map[string]any{"type": "auth", "data": map[string]any{"token": token(t, "alice", time.Hour, "chat/*")}})
	var ack, denied bool
	for range 2 {
		f := c.read()
		ack = ack || f.Type == "auth"
		denied = denied || (f.kind() == "unauthorized" && *f.SubscriptionID == "t")
	}
	must(t, ack && denied, "a fresh narrower token: acknowledged, and the todos subscription ended")
	time.Sleep(2 * time.Second) // past the first token's exp
	c.send(map[string]any{"type": "ping"})
	must(t, c.read().Type == "pong", "the refreshed socket is still open")

	plain := newStack(t, gateway.Config{}, streammodule.Config{})
	p := plain.dial(t, "/", nil)
	p.send(map[string]any{"type": "auth", "data": map[string]any{"token": "x"}})
	f = p.read()
	must(t, f.Type == "error" && f.Code == "bad_frame", "auth on a gateway without tokens: %s", f.Raw)
}

// An idle SSE stream gets a keep-alive comment every SSEKeepAlive, so a
// client can call a silent one dead within seconds; and its token is
// renewed in-band: POST /stream/auth with the session the stream's
// Trine-Session header names. A refused or foreign token changes nothing.
func TestSSEKeepAliveAndTokenRefresh(t *testing.T) {
	f := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(f, []byte(testSecret), 0o600) == nil, "secret")
	v, err := jwtauth.New(jwtauth.Config{HMACSecretFile: f})
	must(t, err == nil, "verifier: %v", err)
	t.Cleanup(v.Close)
	s := newStack(t, gateway.Config{Tokens: v, SSEKeepAlive: 200 * time.Millisecond}, streammodule.Config{})

	sse := s.sse(t, groupPath("chat", "a", "token="+token(t, "alice", 1500*time.Millisecond)), nil)
	_, fr := sse.next()
	must(t, fr.kind() == "sync", "sync: %s", fr.Raw)
	session := sse.resp.Header.Get("Trine-Session")
	must(t, len(session) >= 22, "a session id in Trine-Session: %q", session)
	for range 3 { // idle: comments, well before the 25 s ping interval
		must(t, sse.comment(time.Second) == ": ping", "a keep-alive comment")
	}

	auth := func(body string) (int, string) {
		t.Helper()
		res, err := http.Post(s.srv.URL+"/stream/auth", "text/plain", strings.NewReader(body))
		must(t, err == nil, "POST /stream/auth: %v", err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	code, msg := auth(`{"session":"nope","token":"` + token(t, "alice", time.Hour) + `"}`)
	must(t, code == 404 && strings.Contains(msg, "no_session"), "an unknown session: %d %s", code, msg)
	code, msg = auth(`{"session":"` + session + `","token":"` + token(t, "bob", time.Hour) + `"}`)
	must(t, code == 401 && strings.Contains(msg, "same sub"), "another subject: %d %s", code, msg)
	code, msg = auth(`{"session":"` + session + `"}`)
	must(t, code == 400 && strings.Contains(msg, "bad_frame"), "no token: %d %s", code, msg)
	code, msg = auth(`{"session":"` + session + `","token":"` + token(t, "alice", time.Hour) + `"}`)
	must(t, code == 204, "a fresh token: %d %s", code, msg)

	// Past the first token's exp the stream goes on.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		sse.comment(time.Second)
	}
	s.set(t, "chat", "a", "m1", 1)
	_, fr = sse.next()
	must(t, fr.kind() == "create", "the refreshed stream is still open: %s", fr.Raw)
}
