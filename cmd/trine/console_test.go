package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// consoleGet fetches path from base with an optional bearer token or
// cookie and no redirects followed.
func consoleGet(t *testing.T, base, path, bearer string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestConsoleOnLoopback: a loopback HTTP listener serves the console to
// anyone, with its assets and the listeners the page connects to, but not
// for a Host that is not loopback (DNS rebinding); with --console off it
// is not there.
func TestConsoleOnLoopback(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
	if res, body := consoleGet(t, e.http, "/console/", ""); res.StatusCode != 200 || !strings.Contains(body, "<title>Console · Trine</title>") {
		t.Fatalf("GET /console/ = %d %.200s", res.StatusCode, body)
	}
	if res, body := consoleGet(t, e.http, "/console/console.js", ""); res.StatusCode != 200 || len(body) < 1000 ||
		!strings.Contains(res.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("GET /console/console.js = %d %s, %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(body))
	}
	res, body := consoleGet(t, e.http, "/console/config.json", "")
	var cfg struct{ Stream, III, Token string }
	if res.StatusCode != 200 || json.Unmarshal([]byte(body), &cfg) != nil {
		t.Fatalf("GET /console/config.json = %d %s", res.StatusCode, body)
	}
	if cfg.Stream != "http://"+e.stream || cfg.III != "ws://"+e.iii || cfg.Token != "" {
		t.Fatalf("config.json = %+v, want the stream listener http://%s and the iii listener ws://%s", cfg, e.stream, e.iii)
	}

	// DNS rebinding: a page of evil.example resolved to 127.0.0.1.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.http+"/console/config.json", nil)
	req.Host = "evil.example"
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("GET /console/config.json with Host evil.example: %v %v, want 421", res, err)
	} else {
		res.Body.Close()
	}

	off := startEngine(t, trineBin, testEnv(), engineArgs(t, "--console", "off")...)
	if res, _ := consoleGet(t, off.http, "/console/", ""); res.StatusCode != 404 {
		t.Fatalf("--console off: GET /console/ = %d, want 404", res.StatusCode)
	}
}

// TestConsoleElsewhereNeedsAuth: on a listener bound to all addresses,
// the console and its assets are refused without a console token; a
// token of --console-tokens-file (bearer, or ?token= once, then its
// cookie) or a JWT with "console": true opens it; a JWT without that
// claim, or an unknown token, does not.
func TestConsoleElsewhereNeedsAuth(t *testing.T) {
	t.Parallel()
	const token = "console-secret-token"
	sum := sha256.Sum256([]byte(token))
	tokens := writeTemp(t, "tokens:\n  - sha256: "+hex.EncodeToString(sum[:])+"\n    name: ops\n")
	secret := writeTemp(t, "0123456789abcdef0123456789abcdef\n")
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--http-addr", "0.0.0.0:0", "--console-tokens-file", tokens,
		"--stream-jwt-hmac-secret-file", secret)...)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(e.http, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:" + port
	jwt := func(claims string) string {
		r := runTrine(t, testEnv(), "", "token", "--secret-file", secret, "--sub", "ops", "--claims", claims)
		if r.code != 0 {
			t.Fatalf("trine token: %d %s", r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	for _, c := range []struct{ name, path, bearer string }{
		{"no token", "/console/", ""},
		{"no token, an asset", "/console/console.js", ""},
		{"no token, config", "/console/config.json", ""},
		{"unknown token", "/console/", "nope"},
		{"unknown ?token=", "/console/?token=nope", ""},
		{"JWT without the console claim", "/console/", jwt(`{"role":"ops"}`)},
	} {
		if res, body := consoleGet(t, base, c.path, c.bearer); res.StatusCode != 401 || strings.Contains(body, "<html") {
			t.Errorf("%s: GET %s = %d %.100s, want 401", c.name, c.path, res.StatusCode, body)
		}
	}
	for name, bearer := range map[string]string{"tokens file": token, "JWT": jwt(`{"console":true}`)} {
		if res, body := consoleGet(t, base, "/console/", bearer); res.StatusCode != 200 || !strings.Contains(body, "<title>Console") {
			t.Errorf("%s: GET /console/ = %d, want 200", name, res.StatusCode)
		}
	}
	// ?token= sets the cookie and leaves the address bar.
	res, _ := consoleGet(t, base, "/console/?token="+token, "")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/" || len(res.Cookies()) != 1 || !res.Cookies()[0].HttpOnly {
		t.Fatalf("GET /console/?token= = %d %v %v, want 303 to /console/ with an HttpOnly cookie", res.StatusCode, res.Header, res.Cookies())
	}
	res, body := consoleGet(t, base, "/console/config.json", "", res.Cookies()[0])
	var cfg struct{ Token string }
	if res.StatusCode != 200 || json.Unmarshal([]byte(body), &cfg) != nil || cfg.Token != token {
		t.Fatalf("config.json with the cookie = %d %s, want the token for the page's connections", res.StatusCode, body)
	}
}
