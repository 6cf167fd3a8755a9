package origin_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/origin"
)

func request(local, host, orig string) *http.Request {
	r := httptest.NewRequest("GET", "http://"+host+"/", nil)
	r.Host = host
	if orig != "" {
		r.Header.Set("Origin", orig)
	}
	ip := net.ParseIP(local)
	return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: ip, Port: 3112}))
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name              string
		local, host, orig string
		origins, hosts    []string
		want              int // 0: allowed
	}{
		{"worker on loopback", "127.0.0.1", "127.0.0.1:49135", "", nil, nil, 0},
		{"localhost page", "127.0.0.1", "localhost:3112", "http://localhost:3112", nil, nil, 0},
		{"ipv6 loopback", "::1", "[::1]:3112", "http://[::1]:3112", nil, nil, 0},
		{"DNS rebinding", "127.0.0.1", "evil.example:3112", "http://evil.example:3112", nil, nil, http.StatusMisdirectedRequest},
		{"DNS rebinding with origins set", "127.0.0.1", "evil.example:3112", "http://evil.example:3112", []string{"https://app.example"}, nil, http.StatusMisdirectedRequest},
		{"rebinding without Origin", "127.0.0.1", "evil.example", "", nil, nil, http.StatusMisdirectedRequest},
		{"other port page", "127.0.0.1", "localhost:3112", "http://localhost:8080", nil, nil, 0},
		{"other loopback page", "127.0.0.1", "127.0.0.1:3112", "http://127.0.0.1:8000", []string{"https://app.example"}, nil, 0},
		{"ipv6 loopback page", "::1", "[::1]:3112", "https://[::1]:5173", nil, nil, 0},
		{"loopback page, rebinding host", "127.0.0.1", "evil.example:3112", "http://localhost:8000", nil, nil, http.StatusMisdirectedRequest},
		{"loopback page through a proxy's public host", "127.0.0.1", "app.example", "http://localhost:8000", nil, []string{"app.example"}, http.StatusForbidden},
		{"loopback page, public listener", "10.0.0.5", "localhost:3112", "http://localhost:8000", nil, nil, http.StatusForbidden},
		{"loopback-looking page", "127.0.0.1", "localhost:3112", "http://localhost.evil.example:8000", nil, nil, http.StatusForbidden},
		{"file page", "127.0.0.1", "localhost:3112", "file://", nil, nil, http.StatusForbidden},
		{"allowed origin", "127.0.0.1", "localhost:3112", "http://localhost:8080", []string{"http://localhost:8080"}, nil, 0},
		{"any origin", "127.0.0.1", "localhost:3112", "https://x.test", []string{"*"}, nil, 0},
		{"public listener, configured host", "10.0.0.5", "app.example", "https://app.example", nil, []string{"app.example"}, 0},
		{"public listener, other host", "10.0.0.5", "evil.example", "https://evil.example", nil, []string{"app.example"}, http.StatusMisdirectedRequest},
		{"public listener, no hosts, same-origin claim", "10.0.0.5", "evil.example", "http://evil.example", nil, nil, http.StatusForbidden},
		{"public listener, no hosts, worker", "10.0.0.5", "10.0.0.5:49135", "", nil, nil, 0},
		{"null origin", "127.0.0.1", "localhost:3112", "null", nil, nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &origin.Policy{Origins: tc.origins, Hosts: tc.hosts}
			ref := p.Check(request(tc.local, tc.host, tc.orig))
			switch {
			case tc.want == 0 && ref != nil:
				t.Fatalf("refused: %v", ref)
			case tc.want != 0 && (ref == nil || ref.Status != tc.want):
				t.Fatalf("got %v, want status %d", ref, tc.want)
			}
		})
	}
}

// Refusals are logged with how to allow them, at most one per LogEvery.
func TestRefusalsLoggedRateLimited(t *testing.T) {
	var buf bytes.Buffer
	p := &origin.Policy{Logger: slog.New(slog.NewTextHandler(&buf, nil)), LogEvery: time.Hour, OriginsSetting: "--allowed-origins"}
	for range 3 {
		if p.Check(request("127.0.0.1", "localhost:3112", "https://app.example")) == nil {
			t.Fatal("cross-origin page allowed")
		}
	}
	out := buf.String()
	if strings.Count(out, "browser request refused") != 1 || !strings.Contains(out, "add https://app.example to --allowed-origins") {
		t.Fatalf("log:\n%s", out)
	}
}

// A page opened from file:// sends Origin null, which any sandboxed page
// can send too: the log says to serve the page from localhost, never to
// allow null.
func TestNullOriginAdvice(t *testing.T) {
	var buf bytes.Buffer
	p := &origin.Policy{Logger: slog.New(slog.NewTextHandler(&buf, nil)), OriginsSetting: "--allowed-origins"}
	if p.Check(request("127.0.0.1", "localhost:3112", "null")) == nil {
		t.Fatal("null origin allowed")
	}
	out := buf.String()
	if strings.Contains(out, "add null") || !strings.Contains(out, "serve the page over http from localhost") {
		t.Fatalf("log:\n%s", out)
	}
}

// CheckAllowed refuses allowed-origin values that no browser ever sends,
// giving the form that would match.
func TestCheckAllowed(t *testing.T) {
	for _, ok := range []string{"*", "http://127.0.0.1:8765", "https://app.example", "HTTPS://App.Example", "http://[::1]:3000", "http://localhost"} {
		if err := origin.CheckAllowed(ok); err != nil {
			t.Errorf("CheckAllowed(%q) = %v", ok, err)
		}
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:8765/":    `use "http://127.0.0.1:8765"`,
		"http://127.0.0.1:8765/app": `use "http://127.0.0.1:8765"`,
		"127.0.0.1:8765":            `use "http://127.0.0.1:8765"`,
		"app.example":               `use "https://app.example"`,
		"http://localhost:80":       `use "http://localhost"`,
		"https://app.example:443":   `use "https://app.example"`,
		"https://app.example?x=1":   `use "https://app.example"`,
		"ws://localhost:3112":       `use "http://localhost:3112"`,
		"https://*.example.com":     "only * alone",
		"null":                      "serve the page over http from localhost",
		"https://user@app.example":  `use "https://app.example"`,
		"http://":                   "no host",
	} {
		err := origin.CheckAllowed(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckAllowed(%q) = %v, want an error with %q", in, err, want)
		}
	}
}
