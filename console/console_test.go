package console

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/trinehq/trine/console/internal/bundle"
)

// TestBundleIsCurrent: dist/console.js is what go generate makes from
// web/src and clients/js/src today (make check diffs it too).
func TestBundleIsCurrent(t *testing.T) {
	want, err := bundle.Build(".")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("dist/console.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("dist/console.js (%d bytes) is not the bundle of web/src (%d bytes): run go generate ./console", len(got), len(want))
	}
}

func get(t *testing.T, h http.Handler, path string, hdr map[string]string, cookie string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:1"+path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestTokenOnlyInTheDocument: a script of another page on this origin
// (an http trigger's) can fetch nothing that carries the console token:
// config.json is gone, the document is served only to a top-level
// navigation, unframed, with COOP and a strict CSP.
func TestTokenOnlyInTheDocument(t *testing.T) {
	const tok = "s3cret-console-token"
	h := New(Config{Admit: func(s string) bool { return s == tok }, StreamPort: 7001, IIIPort: 7002})
	fetchHdr := map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
	for _, p := range []string{"/console/config.json", "/console/", "/console/index.html", "/console/console.js", "/console/style.css"} {
		w := get(t, h, p, fetchHdr, tok)
		if strings.Contains(w.Body.String(), tok) {
			t.Fatalf("a same-origin fetch of %s reads the token (%d)", p, w.Code)
		}
	}
	if w := get(t, h, "/console/", fetchHdr, tok); w.Code != http.StatusForbidden {
		t.Fatalf("fetch of the document: %d, want 403", w.Code)
	}
	nav := map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
	for _, bad := range []string{"", "not-the-token"} {
		if w := get(t, h, "/console/", nav, bad); w.Code != http.StatusUnauthorized {
			t.Fatalf("navigation with token %q: %d, want 401", bad, w.Code)
		}
	}
	if n := h.AuthRefusals(); n != 2 {
		t.Fatalf("AuthRefusals() = %d, want 2", n)
	}
	w := get(t, h, "/console/", nav, tok)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `&#34;token&#34;:&#34;`+tok) {
		t.Fatalf("navigation: %d %s", w.Code, w.Body)
	}
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "connect-src 'self' http://*:7001 ws://*:7001 http://*:7002 ws://*:7002"} {
		if !strings.Contains(csp, want) {
			t.Fatalf("CSP %q lacks %q", csp, want)
		}
	}
	if w.Header().Get("Cross-Origin-Opener-Policy") != "same-origin" || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Fatalf("headers %v", w.Header())
	}
	if strings.Contains(w.Body.String(), "127.0.0.1") {
		t.Fatal("the document echoes the Host header")
	}
}

// TestTokenQueryOnlyFromThisOrigin: a cross-site link to ?token= sets
// no cookie (login CSRF, token fixation); a typed or same-origin one
// does, on an open listener too.
func TestTokenQueryOnlyFromThisOrigin(t *testing.T) {
	const tok = "s3cret-console-token"
	h := New(Config{Admit: func(s string) bool { return s == tok }})
	for _, site := range []string{"cross-site", "same-site"} {
		w := get(t, h, "/console/?token="+tok, map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, "")
		if w.Code != http.StatusForbidden || w.Header().Get("Set-Cookie") != "" {
			t.Fatalf("%s link: %d, Set-Cookie %q", site, w.Code, w.Header().Get("Set-Cookie"))
		}
	}
	for _, site := range []string{"none", "same-origin"} {
		w := get(t, h, "/console/?token="+tok, map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, "")
		if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Set-Cookie"), tok) {
			t.Fatalf("%s link: %d, Set-Cookie %q", site, w.Code, w.Header().Get("Set-Cookie"))
		}
	}
	// On an open listener the token is only handed on to the listeners
	// (an iii auth function reads it), and a cross-site link plants none.
	open := New(Config{Open: true})
	w := get(t, open, "/console/?token=planted", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, "")
	if w.Code != http.StatusForbidden || w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("open listener, cross-site link: %d, Set-Cookie %q", w.Code, w.Header().Get("Set-Cookie"))
	}
}
