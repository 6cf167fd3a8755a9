package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
)

// A multiplexed SSE stream (GET / with Accept: text/event-stream) carries
// every subscription of a client over one HTTP request, so a browser's
// six connections per host do not bound its groups: join, leave and ping
// frames come by POST /stream/session with the stream's Trine-Session,
// their answers on the stream. A session takes SessionPosts POSTs a
// second; more get 429 and change nothing.
func TestSSESessionMultiplexes(t *testing.T) {
	s := newStack(t, gateway.Config{SessionPosts: 5}, streammodule.Config{})
	for _, g := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		s.set(t, "chat", g, "m", g)
	}
	sse := s.sse(t, "/", nil)
	session := sse.resp.Header.Get("Trine-Session")
	must(t, session != "", "a session id in Trine-Session")
	post := func(frames ...any) (int, string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"session": session, "frames": frames})
		res, err := http.Post(s.srv.URL+"/stream/session", "text/plain", strings.NewReader(string(b)))
		must(t, err == nil, "POST /stream/session: %v", err)
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	var joins []any
	for i, g := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		joins = append(joins, join(string(rune('0'+i)), "chat", g, nil))
	}
	code, msg := post(joins...)
	must(t, code == 204, "eight joins in one POST: %d %s", code, msg)
	synced := map[string]bool{}
	for len(synced) < 8 {
		_, f := sse.next()
		must(t, f.kind() == "sync" && f.SubscriptionID != nil, "a sync with its subscriptionId: %s", f.Raw)
		synced[*f.SubscriptionID] = true
	}
	code, msg = post(leave("0", "chat", "a"), map[string]any{"type": "ping"})
	must(t, code == 204, "leave and ping: %d %s", code, msg)
	_, f := sse.next()
	must(t, f.Type == "pong", "the pong comes on the stream: %s", f.Raw)
	s.set(t, "chat", "a", "m2", 1) // left: not delivered
	s.set(t, "chat", "b", "m2", 1)
	_, f = sse.next()
	must(t, f.kind() == "create" && *f.SubscriptionID == "1", "only the joined group's change: %s", f.Raw)

	code, msg = post(map[string]any{"type": "nope"})
	must(t, code == 204, "a bad frame is answered on the stream: %d %s", code, msg)
	_, f = sse.next()
	must(t, f.Type == "error" && f.Code == "bad_frame", "bad_frame: %s", f.Raw)

	// Seven POSTs at once: past five in a second, refused.
	limited := false
	for i := 0; i < 7 && !limited; i++ {
		code, msg = post(join("z", "chat", "z", nil))
		limited = code == http.StatusTooManyRequests && strings.Contains(msg, "rate_limited")
	}
	must(t, limited, "over SessionPosts a second: 429 rate_limited, got %d %s", code, msg)

	res, err := http.Post(s.srv.URL+"/stream/session", "text/plain", strings.NewReader(`{"session":"nope","frames":[]}`))
	must(t, err == nil && res.StatusCode == 404, "an unknown session: %v %v", err, res.Status)
	res.Body.Close()
}
