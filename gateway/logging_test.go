package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/logtest"
	"github.com/trinehq/trine/streammodule"
)

// TestRefusalsAreLogged: a connection refused for its token is logged at
// warn with its address and why, once for a burst of them (the rest are
// counted in the next line).
func TestRefusalsAreLogged(t *testing.T) {
	logs, log := logtest.New()
	s := newStack(t, gateway.Config{Tokens: verifier(t), Logger: log}, streammodule.Config{})
	for range 5 {
		must(t, status(t, s, groupPath("s", "g", "token=bad"), nil) == http.StatusUnauthorized, "a bad token is refused")
	}
	rs := logs.Records("stream connection refused")
	if len(rs) != 1 {
		t.Fatalf("%d log lines for 5 refusals, want 1: %v", len(rs), rs)
	}
	if r := rs[0]; r["level"] != "WARN" || !strings.HasPrefix(r["remote"].(string), "127.0.0.1:") || !strings.Contains(r["error"].(string), "unauthorized") {
		t.Errorf("log line %v, want WARN with the remote address and the reason", r)
	}
}

// TestSlowCloseIsLogged: a client closed for falling behind is logged at
// warn with its address and why.
func TestSlowCloseIsLogged(t *testing.T) {
	logs, log := logtest.New()
	s := newStack(t, gateway.Config{QueueBytes: 256 << 10, Logger: log}, streammodule.Config{})
	stalled := rawUpgrade(t, s, groupPath("s", "g"))
	defer stalled.Close()
	pad := strings.Repeat("x", 64<<10)
	for n := 0; s.gw.Stats().SlowConsumerCloses == 0; n++ {
		must(t, n < 1000, "the stalled client was never closed")
		s.set(t, "s", "g", "big", pad)
	}
	rs := logs.Records("stream client too slow: closing")
	if len(rs) != 1 || rs[0]["level"] != "WARN" || !strings.HasPrefix(rs[0]["remote"].(string), "127.0.0.1:") ||
		!strings.Contains(rs[0]["reason"].(string), "slow consumer") {
		t.Errorf("log lines %v, want one WARN with the remote address and the reason", rs)
	}
}
