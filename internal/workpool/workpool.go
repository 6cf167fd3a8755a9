// Package workpool runs short tasks on goroutines that it keeps for the
// next task, so that a task does not pay for a fresh goroutine and the
// growth of its stack, and ends them when they have been idle a while.
//
// Concurrency: a Pool's methods are safe to call concurrently. The pool
// starts one goroutine per task that finds no idle worker; at most max of
// them are kept after their task, each ending once it has had no work for
// the idle time, or at Close, which waits for every task the pool took.
package workpool

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pool runs tasks on reused goroutines. Its owner calls Close.
type Pool struct {
	max  int
	idle time.Duration
	work chan func() // unbuffered: a send succeeds only into an idle worker
	quit chan struct{}

	running atomic.Int32 // goroutines started and not ended
	kept    atomic.Int32 // of them, the ones that wait for more work
	waiting atomic.Int32 // of those, the ones waiting now

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// New returns a pool that keeps at most max idle goroutines, each for
// idle after its last task.
func New(max int, idle time.Duration) *Pool {
	return &Pool{max: max, idle: idle, work: make(chan func()), quit: make(chan struct{})}
}

// Go runs f on an idle worker, or else on a goroutine of its own, which
// the pool keeps for later tasks while it keeps fewer than max. It never
// waits for a worker. After Close it runs nothing and returns false.
func (p *Pool) Go(f func()) bool {
	select {
	case p.work <- f:
		return true
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	p.running.Add(1)
	if p.kept.Add(1) > int32(p.max) {
		p.kept.Add(-1)
		go p.once(f)
		return true
	}
	go p.worker(f)
	return true
}

// once runs f on a goroutine that ends with it.
func (p *Pool) once(f func()) {
	defer p.wg.Done()
	defer p.running.Add(-1)
	f()
}

// worker runs f, then the tasks handed to it, until it has been idle for
// p.idle or the pool closes.
func (p *Pool) worker(f func()) {
	defer p.wg.Done()
	defer p.running.Add(-1)
	defer p.kept.Add(-1)
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(p.idle)
		p.waiting.Add(1)
		select {
		case f = <-p.work:
			p.waiting.Add(-1)
		case <-idle.C:
			p.waiting.Add(-1)
			return
		case <-p.quit:
			p.waiting.Add(-1)
			return
		}
	}
}

// Close refuses new tasks, waits for the running ones and ends every
// worker. It may be called more than once.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.quit)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Running is the number of goroutines the pool has started that have not
// ended: working or idle.
func (p *Pool) Running() int { return int(p.running.Load()) }

// Idle is the number of workers waiting for a task.
func (p *Pool) Idle() int { return int(p.waiting.Load()) }
