package jsboot_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/internal/jsboot"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A part that waits is retried until it is up, with one warning and one
// line when up; a part JetStream refuses is not retried; Run returns when
// ctx ends.
func TestStarter(t *testing.T) {
	var logs lockedBuf
	var tries atomic.Int32
	st := jsboot.NewStarter(slog.New(slog.NewTextHandler(&logs, nil)),
		jsboot.Part{Name: "late", Open: func(context.Context) error {
			if tries.Add(1) < 4 {
				return jetstream.ErrJetStreamNotEnabled
			}
			return nil
		}},
		jsboot.Part{Name: "bad", Open: func(context.Context) error { return errors.New("invalid config") }},
		jsboot.Part{Name: "never", Open: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
	)
	if got := st.States()["late"]; got != jsboot.StateStarting {
		t.Errorf("before Run: %s", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.Run(ctx); close(done) }()
	select {
	case <-st.Settled():
	case <-time.After(5 * jsboot.FirstAttempt):
		t.Fatal("not settled after the first attempts")
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for st.States()["late"] != jsboot.StateUp {
		if time.Now().After(deadline) {
			t.Fatalf("states %v", st.States())
		}
		<-tick.C
	}
	if s := st.States(); s["bad"] != jsboot.StateFailed || s["never"] != jsboot.StateWaiting {
		t.Errorf("states %v", s)
	}
	cancel()
	<-done
	l := logs.String()
	for want, n := range map[string]int{"part=late state=waiting_for_jetstream": 1, "part=late state=up": 1, "part=bad state=failed": 1, "part=never state=waiting_for_jetstream": 1} {
		if got := strings.Count(l, want); got != n {
			t.Errorf("%d lines with %q, want %d:\n%s", got, want, n, l)
		}
	}
}
