package ratelog_test

import (
	"testing"
	"time"

	"github.com/trinehq/trine/internal/ratelog"
)

// TestLimiter: the first line goes through, the ones within Every are
// held back and counted, and the next one after Every reports them.
func TestLimiter(t *testing.T) {
	l := &ratelog.Limiter{}
	const every = 20 * time.Millisecond
	if held, ok := l.Allow(every); !ok || held != 0 {
		t.Fatalf("first Allow() = %d, %v; want 0, true", held, ok)
	}
	start := time.Now()
	n := 0
	for ; time.Since(start) < 10*time.Millisecond; n++ {
		if _, ok := l.Allow(every); ok {
			t.Fatalf("Allow() within Every = true after %v", time.Since(start))
		}
	}
	var held int
	ok := false
	for !ok {
		held, ok = l.Allow(every)
		if !ok {
			n++
		}
	}
	if held != n {
		t.Errorf("Allow() after Every reports %d held back, want %d", held, n)
	}
}
