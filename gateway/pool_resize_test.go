package gateway

import (
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
)

// TestWriterPoolResizes: the pool grows and shrinks to the CPUs the
// process is given, and never to fewer than 1.
func TestWriterPoolResizes(t *testing.T) {
	p := newWriterPool(4)
	defer p.close()
	if n := p.size(); n != 4 {
		t.Fatalf("new pool: %d writers, want 4", n)
	}
	p.resize(1)
	poll.CheckFor(t, 5*time.Second, poll.Holds("the pool to shrink to 1 writer", func() bool { return p.size() == 1 }))
	p.resize(3)
	if n := p.size(); n != 3 {
		t.Fatalf("grown pool: %d writers, want 3", n)
	}
	p.resize(0)
	poll.CheckFor(t, 5*time.Second, poll.Holds("the pool to keep 1 writer", func() bool { return p.size() == 1 }))
}
