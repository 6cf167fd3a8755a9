package console

import (
	"net/http"
	"strings"
	"testing"

	"github.com/trinehq/trine/internal/logtest"
)

// TestRefusalsAreLogged: a request refused for its token is logged at
// warn with its address and why, once for a burst of them.
func TestRefusalsAreLogged(t *testing.T) {
	logs, log := logtest.New()
	h := New(Config{Admit: func(string) bool { return false }, Logger: log})
	nav := map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
	for range 3 {
		if w := get(t, h, "/console/", nav, "not-a-token"); w.Code != http.StatusUnauthorized {
			t.Fatalf("a bad token: %d, want 401", w.Code)
		}
	}
	rs := logs.Records("console request refused")
	if len(rs) != 1 || rs[0]["level"] != "WARN" || rs[0]["remote"] == nil || !strings.Contains(rs[0]["reason"].(string), "not a console token") {
		t.Errorf("log records %v: want one WARN with the remote address and the reason for 3 refusals", rs)
	}
}
