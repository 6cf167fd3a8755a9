package defaults_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/defaults"
)

func TestDefaults(t *testing.T) {
	n, neg, set, d := 0, -1, 7, time.Duration(0)
	defaults.Positive(&n, 5)
	defaults.Positive(&neg, 5)
	defaults.Positive(&set, 5)
	defaults.Positive(&d, time.Second)
	if n != 5 || neg != 5 || set != 7 || d != time.Second {
		t.Fatalf("got %d %d %d %v", n, neg, set, d)
	}
	var l *slog.Logger
	defaults.Logger(&l)
	if l == nil {
		t.Fatal("nil logger left nil")
	}
	own := slog.Default()
	defaults.Logger(&own)
	if own != slog.Default() {
		t.Fatal("a logger replaced")
	}
}
