package main

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
)

// TestCORSLeavesConsoleAlone: --http-cors-origins with credentials
// answers for http triggers but never for /console, so no other origin
// reads the console's answers with the user's cookie.
func TestCORSLeavesConsoleAlone(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) })
	h := corsConfig{Origins: []string{"http://app.example"}, Methods: []string{"GET"}, Credentials: true}.wrap(ok)
	for _, p := range []string{"/console", "/console/", "/console/config.json"} {
		for _, m := range []string{http.MethodGet, http.MethodOptions} {
			r := httptest.NewRequest(m, p, nil)
			r.Header.Set("Origin", "http://app.example")
			r.Header.Set("Access-Control-Request-Method", "GET")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if v := w.Header().Get("Access-Control-Allow-Origin"); v != "" {
				t.Fatalf("%s %s: Access-Control-Allow-Origin %q", m, p, v)
			}
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/hook", nil)
	r.Header.Set("Origin", "http://app.example")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Header().Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("http trigger lost CORS: %v", w.Header())
	}
}

// TestConsoleAddr: --console-addr serves the console on a listener of its
// own, and the http listener (where http triggers serve their pages) no
// longer serves it.
func TestConsoleAddr(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--console-addr", "127.0.0.1:0")...)
	m := regexp.MustCompile(` console=(\S+)`).FindStringSubmatch(e.stdout.String())
	if m == nil {
		t.Fatalf("no console= in the start line:\n%s", e.stdout.String())
	}
	get := func(url string) int {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get("http://" + m[1] + "/console/"); code != http.StatusOK {
		t.Fatalf("console on --console-addr: %d", code)
	}
	if code := get(e.http + "/console/"); code == http.StatusOK {
		t.Fatal("the http listener still serves the console")
	}
}
