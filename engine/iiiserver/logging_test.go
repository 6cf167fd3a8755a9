package iiiserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/internal/logtest"
)

// noTokens knows no token.
type noTokens struct{}

func (noTokens) Lookup(string) (engine.AuthResult, bool) { return engine.AuthResult{}, false }

// TestRefusalsAreLogged: worker connections refused by the listener's
// policy are logged at warn with the address and why, once for a burst.
func TestRefusalsAreLogged(t *testing.T) {
	logs, log := logtest.New()
	s := start(t, iiiserver.Config{Access: &engine.Access{Tokens: noTokens{}}, Logger: log})
	for range 3 {
		_, res, err := websocket.Dial(t.Context(), s.url, nil)
		if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("dial without a token: %v, want 401", err)
		}
	}
	rs := logs.Records("iii worker connection refused")
	if len(rs) != 1 || rs[0]["level"] != "WARN" || !strings.HasPrefix(rs[0]["remote"].(string), "127.0.0.1") ||
		!strings.Contains(rs[0]["error"].(string), "no known token") {
		t.Errorf("log records %v: want one WARN with the remote address and the reason for 3 refusals", rs)
	}
}
