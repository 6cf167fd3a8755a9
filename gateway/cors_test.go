package gateway_test

import (
	"net/http"
	"testing"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
)

// An allowed origin may open a cross-origin EventSource (with
// credentials) and gets its preflight answered; any other gets neither
// CORS headers nor the stream.
func TestCrossOriginSSE(t *testing.T) {
	s := newStack(t, gateway.Config{AllowedOrigins: []string{"http://app.example"}}, streammodule.Config{})
	do := func(method, origin string, h ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, s.srv.URL+"/stream/s/g", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Accept", "text/event-stream")
		for i := 0; i+1 < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	res := do(http.MethodGet, "http://app.example")
	must(t, res.StatusCode == 200 && res.Header.Get("Access-Control-Allow-Origin") == "http://app.example" &&
		res.Header.Get("Access-Control-Allow-Credentials") == "true", "allowed origin: %d %v", res.StatusCode, res.Header)
	res = do(http.MethodOptions, "http://app.example", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "last-event-id")
	must(t, res.StatusCode == 204 && res.Header.Get("Access-Control-Allow-Origin") == "http://app.example", "preflight: %d %v", res.StatusCode, res.Header)
	res = do(http.MethodGet, "http://evil.example")
	must(t, res.StatusCode == 403 && res.Header.Get("Access-Control-Allow-Origin") == "", "other origin: %d %v", res.StatusCode, res.Header)
	res = do(http.MethodOptions, "http://evil.example", "Access-Control-Request-Method", "GET")
	must(t, res.Header.Get("Access-Control-Allow-Origin") == "", "other origin's preflight: %v", res.Header)
}
