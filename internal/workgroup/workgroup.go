// Package workgroup runs goroutines that their owner waits for before it
// releases what they use: an engine's background work, a worker
// connection's calls and notices. Once the owner has begun waiting, new
// work is refused rather than started, because it concerns something that
// is ending.
//
// Concurrency: a Group is safe for concurrent use, also from its own
// goroutines. Go starts one goroutine per accepted call; Wait, called by
// the owner, stops the group and returns once all of them have returned.
package workgroup

import "sync"

// Group is a set of goroutines that Wait waits for. The zero value is
// ready to use; a Group must not be copied after first use.
type Group struct {
	mu      sync.Mutex
	stopped bool // set by Wait; Go refuses from then on
	wg      sync.WaitGroup
}

// Go runs f on a new goroutine and reports true, unless Wait has begun:
// then it drops f and reports false.
func (g *Group) Go(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Go(f)
	return true
}

// Wait refuses new goroutines from now on and returns once every
// goroutine Go started has returned. It may be called more than once.
func (g *Group) Wait() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.wg.Wait()
}
