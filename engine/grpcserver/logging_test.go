package grpcserver_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/logtest"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// noTokens knows no token.
type noTokens struct{}

func (noTokens) Lookup(string) (engine.AuthResult, bool) { return engine.AuthResult{}, false }

// TestRefusalsAreLogged: calls refused by the listener's policy are
// logged at warn with the caller's address and why, once for a burst.
func TestRefusalsAreLogged(t *testing.T) {
	t.Parallel()
	logs, log := logtest.New()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{Access: &engine.Access{Tokens: noTokens{}}, Logger: log})
	c := client(t, srv.Addr)
	for range 3 {
		if _, err := c.Trigger(t.Context(), &trinev1.TriggerRequest{FunctionId: "engine::health::check"}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Trigger without a token = %v, want Unauthenticated", err)
		}
	}
	rs := logs.Records("gRPC connection refused")
	if len(rs) != 1 || rs[0]["level"] != "WARN" || !strings.HasPrefix(rs[0]["remote"].(string), "127.0.0.1") ||
		!strings.Contains(rs[0]["error"].(string), "no known token") {
		t.Errorf("log records %v: want one WARN with the remote address and the reason for 3 refusals", rs)
	}
}
