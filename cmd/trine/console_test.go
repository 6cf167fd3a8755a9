package main

import (
	"net/http"
	"net/http/httptest"
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
