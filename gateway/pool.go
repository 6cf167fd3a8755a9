package gateway

import (
	"runtime"
	"sync"
)

// writerPool is a fixed set of goroutines that write to sockets with
// something queued, each socket in turn. Under load a socket waits for its
// turn while its frames accumulate, so one write carries many of them; and
// the scheduler's run queue holds a few writers, not one per busy socket,
// so events keep flowing in promptly. A socket that would block leaves the
// pool for a goroutine of its own (conn.slow).
type writerPool struct {
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*conn
	head   int
	closed bool
	wg     sync.WaitGroup
}

func newWriterPool(n int) *writerPool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &writerPool{}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(n)
	for range n {
		go p.work()
	}
	return p
}

func (p *writerPool) push(c *conn) {
	p.mu.Lock()
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	p.cond.Signal()
}

func (p *writerPool) next() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.head == len(p.queue) {
		if p.closed {
			return nil
		}
		p.cond.Wait()
	}
	c := p.queue[p.head]
	p.queue[p.head] = nil
	p.head++
	if p.head == len(p.queue) { // drained: reuse the array from the start
		p.queue, p.head = p.queue[:0], 0
	} else if p.head > 1024 && p.head*2 > len(p.queue) {
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue, p.head = p.queue[:n], 0
	}
	return c
}

func (p *writerPool) work() {
	defer p.wg.Done()
	bp := bufPool.Get().(*[]byte)
	for {
		c := p.next()
		if c == nil {
			return
		}
		if c.turn(bp) {
			p.push(c)
		}
		if cap(*bp) > 1<<20 { // keep no huge buffer between turns
			*bp = make([]byte, 0, 16<<10)
		}
	}
}

// close stops the workers once the queue is empty.
func (p *writerPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}
