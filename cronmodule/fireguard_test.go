package cronmodule

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/moduletest"
)

// countingClaims wins every claim and counts them by trigger id.
type countingClaims struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingClaims) Claim(_ context.Context, job string, _ time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[job]++
	return true, nil
}

func (c *countingClaims) count(job string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[job]
}

// warnCounter counts the records at Warn and above.
type warnCounter struct{ n atomic.Int64 }

func (w *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.n.Add(1)
	}
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }

// TestRefusedFiresAreNotClaimedNorLoggedEach: the fires of a connection
// under a policy past its fire rate (--trigger-fire-rate) are skipped
// before they are claimed, so they cost the fleet no JetStream write, and
// skipped or failing fires log one line per owner per interval, not one
// per fire.
func TestRefusedFiresAreNotClaimedNorLoggedEach(t *testing.T) {
	e := enginetest.Run(t, engine.Config{TriggerFireRate: 0.25, DefaultTimeout: 5 * time.Second})
	claims := &countingClaims{n: map[string]int{}}
	warns := &warnCounter{}
	m, _ := New(Config{Claims: claims, Logger: slog.New(warns)})
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	var runs atomic.Int64
	for _, fn := range []string{"test::one", "test::many"} {
		if err := e.RegisterFunction(fn, "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
			if fn == "test::one" {
				runs.Add(1)
			}
			return nil, nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	every := []byte(`{"expression":"* * * * * *"}`)
	one := moduletest.Granted(t, e, `{}`)
	if err := one.RegisterTrigger(t.Context(), engine.Trigger{ID: "one", Type: TriggerCron, FunctionID: "test::one", Config: every}); err != nil {
		t.Fatal(err)
	}
	many := moduletest.Granted(t, e, `{}`)
	for i := range 20 {
		if err := many.RegisterTrigger(t.Context(), engine.Trigger{ID: fmt.Sprintf("many%d", i), Type: TriggerCron, FunctionID: "test::many", Config: every}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for runs.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("trigger one ran %d times in 15 s, want 2 (one fire every 4 s)", runs.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, ran := claims.count("one"), runs.Load()
	t.Logf("trigger one: %d fires claimed, %d run; %d warn lines for 21 every-second triggers", got, ran, warns.n.Load())
	if int64(got) > ran+1 {
		t.Fatalf("trigger one claimed %d fires and ran %d: refused fires were claimed", got, ran)
	}
	if n := warns.n.Load(); n > 2 {
		t.Fatalf("%d warn lines for refused fires of two owners, want at most one per owner per interval", n)
	}
}
