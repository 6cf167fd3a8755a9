package contracts

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/trinehq/trine/contract"
)

// gate counts the writes to one name that are between their check and
// their commit, by epoch: a new version's re-check starts a new epoch
// once the version is pending, and waits for the writes of the old one,
// which were checked without it.
type gate struct {
	cur atomic.Pointer[epoch]
}

func newGate() *gate {
	g := &gate{}
	g.cur.Store(newEpoch())
	return g
}

// epoch is the writes that began under one epoch of a gate.
type epoch struct {
	n       atomic.Int64
	retired atomic.Bool
	once    sync.Once
	done    chan struct{} // closed once retired with no write left
}

func newEpoch() *epoch { return &epoch{done: make(chan struct{})} }

// enter counts a write in the gate's current epoch and returns it.
func (g *gate) enter() *epoch {
	for {
		e := g.cur.Load()
		e.n.Add(1)
		if g.cur.Load() == e {
			return e
		}
		// Retired meanwhile: the write belongs to the next epoch, whose
		// checks see the pending version.
		e.leave()
	}
}

func (e *epoch) leave() {
	if e.n.Add(-1) == 0 && e.retired.Load() {
		e.once.Do(func() { close(e.done) })
	}
}

// retire starts a new epoch and returns the old one, whose writes are
// done when its done channel is closed.
func (g *gate) retire() *epoch {
	old := g.cur.Swap(newEpoch())
	old.retired.Store(true)
	if old.n.Load() == 0 {
		old.once.Do(func() { close(old.done) })
	}
	return old
}

// Write is a write between its check and its commit: call Done once it
// is committed or refused. The zero Write (a name without a contract)
// waits for nothing.
type Write struct{ e *epoch }

// Done ends the write.
func (w Write) Done() {
	if w.e != nil {
		w.e.leave()
	}
}

// Begin returns name's contract in force, or nil, for a write by
// function fn, and counts the write in flight until its Done: a new
// version's re-check does not start before the writes checked without
// it are done. For a name without a contract, one map lookup.
func (s *Set) Begin(ctx context.Context, fn, name string) (*contract.Contract, Write, error) {
	g, ok := (*s.names.Load())[name]
	if !ok {
		return nil, Write{}, nil
	}
	w := Write{g.enter()}
	c, err := s.lookup(ctx, name)
	if err != nil {
		w.Done()
		return nil, Write{}, Refused(fn, err, "")
	}
	return c, w, nil
}

// drain waits until the writes to name checked before the version being
// defined was pending are done: those after are checked against it too.
func (s *Set) drain(ctx context.Context, name string) error {
	g := (*s.names.Load())[name]
	if g == nil {
		return nil
	}
	old := g.retire()
	select {
	case <-old.done:
		return nil
	default:
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-old.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Draining is how many definitions of this Set wait for writes checked
// without their new version to commit before re-checking what is
// stored.
func (s *Set) Draining() int { return int(s.waiting.Load()) }
