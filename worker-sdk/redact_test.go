package trine_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/logtest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestSubscriptionKeepsTokensOutOfErrorsAndLogs: a token in the gateway
// URL's query (?token=, as browsers send it) never appears in the errors
// Subscribe returns or in what it logs at warn when the gateway cannot be
// reached, refuses the handshake, or goes away.
func TestSubscriptionKeepsTokensOutOfErrorsAndLogs(t *testing.T) {
	const secret = "s3cr3t-t0ken"
	q := url.Values{"token": {secret}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// Unreachable, and refused with 400.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusBadRequest) }))
	defer refusing.Close()
	for _, base := range []string{closed.URL + "/?token=" + secret, refusing.URL, "http://[::1" + "?token=" + secret} {
		_, err := trine.Subscribe(ctx, base, "s", "g", trine.WithQuery(q), trine.WithLogger(slog.New(slog.DiscardHandler)))
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("Subscribe(%s) = %v: want an error without the token", base, err)
		}
	}

	// Connected, then the gateway refuses the reconnect: the end is
	// logged at warn.
	var accepted sync.WaitGroup
	var handshakes atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if handshakes.Add(1) > 1 {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		accepted.Go(func() { _ = c.CloseNow() })
	}))
	defer gw.Close()
	logs, log := logtest.New()
	sub, err := trine.Subscribe(ctx, gw.URL, "s", "g", trine.WithQuery(q), trine.WithReconnectBackoff(10*time.Millisecond, 20*time.Millisecond), trine.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	accepted.Wait()
	poll.CheckFor(t, 10*time.Second, poll.Holds("the refused reconnect logged", func() bool { return strings.Contains(logs.String(), "subscription ended") }))
	if strings.Contains(logs.String(), secret) || !strings.Contains(logs.String(), "REDACTED") {
		t.Fatalf("the token is in the log, or no URL is:\n%s", logs.String())
	}
}
