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
// pool for a goroutine of its own (conn.slow). Its size follows the CPUs
// the process has (resize): more writers than those only take turns
// sooner, each finding fewer frames to write.
//
// An event for many sockets reaches the pool in a few hand-offs (see
// handoff), and a worker takes up to workerTake sockets per visit to the
// queue: at a light rate, where every socket has one frame to write, the
// cost per socket is its write, not a lock, a signal and a wake-up.
type writerPool struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*conn
	head    int
	waiting int // workers waiting in next
	closed  bool
	want    int // workers wanted
	live    int // workers running
	wg      sync.WaitGroup
	// handoffs counts pushes into the queue (tests).
	handoffs int
}

// workerTake is how many sockets a worker takes from the queue at once.
const workerTake = 32

func newWriterPool(n int) *writerPool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &writerPool{}
	p.cond = sync.NewCond(&p.mu)
	p.resize(n)
	return p
}

// resize makes the pool n workers (at least 1): new ones start at once,
// extra ones stop when their turn is over.
func (p *writerPool) resize(n int) {
	n = max(n, 1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.want = n
	start := n - p.live
	if start > 0 {
		p.live = n
		p.wg.Add(start)
	}
	p.mu.Unlock()
	for range start {
		go p.work()
	}
	if start < 0 {
		p.cond.Broadcast() // idle ones stop now
	}
}

// size is the number of workers running.
func (p *writerPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

func (p *writerPool) push(c *conn) {
	p.mu.Lock()
	p.queue = append(p.queue, c)
	p.handoffs++
	wake := p.waiting > 0
	p.mu.Unlock()
	if wake {
		p.cond.Signal()
	}
}

// pushAll queues every connection of cs at once, waking as many waiting
// workers as can share them.
func (p *writerPool) pushAll(cs []*conn) {
	if len(cs) == 0 {
		return
	}
	p.mu.Lock()
	p.queue = append(p.queue, cs...)
	p.handoffs++
	wake := min(p.waiting, (len(cs)+workerTake-1)/workerTake)
	p.mu.Unlock()
	for range wake {
		p.cond.Signal()
	}
}

// next appends up to workerTake queued connections to dst, waiting for
// one; it returns dst unchanged once the pool is closed and drained, or
// when the pool has more workers than it wants (the caller stops).
func (p *writerPool) next(dst []*conn) []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.live > p.want {
			p.live--
			if p.head < len(p.queue) && p.waiting > 0 {
				p.cond.Signal() // the wake-up may have been for this one
			}
			return dst
		}
		if p.head < len(p.queue) {
			break
		}
		if p.closed {
			return dst
		}
		p.waiting++
		p.cond.Wait()
		p.waiting--
	}
	end := min(len(p.queue), p.head+workerTake)
	// Share a short queue with a waiting worker: it takes half.
	if p.waiting > 0 && end-p.head > 1 && end == len(p.queue) {
		end = p.head + (end-p.head+1)/2
	}
	dst = append(dst, p.queue[p.head:end]...)
	clear(p.queue[p.head:end])
	p.head = end
	if p.head == len(p.queue) { // drained: reuse the array from the start
		p.queue, p.head = p.queue[:0], 0
	} else if p.head > 1024 && p.head*2 > len(p.queue) {
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue, p.head = p.queue[:n], 0
	}
	if p.head < len(p.queue) && p.waiting > 0 {
		p.cond.Signal()
	}
	return dst
}

func (p *writerPool) work() {
	defer p.wg.Done()
	w := newPoolWriter()
	var (
		mine  []*conn
		again []*conn
	)
	for {
		mine = p.next(mine[:0])
		if len(mine) == 0 {
			return
		}
		for i, c := range mine {
			mine[i] = nil
			if c.turn(w) {
				again = append(again, c)
			}
		}
		if len(again) > 0 {
			p.pushAll(again)
			clear(again)
			again = again[:0]
		}
		if cap(w.buf) > 1<<20 { // keep no huge buffer between turns
			w.buf = make([]byte, 0, 16<<10)
		}
		// A worker's writes do not give up its P (rawWriteFD): let the
		// goroutines that queue frames run between batches, so that the
		// next turn of a busy socket finds more of them.
		runtime.Gosched()
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

// handoff gathers the connections that one event made ready to write, so
// that the pool gets them in a few hand-offs rather than one each: the
// delivering goroutine passes it down to conn.kick, and flushes it once
// it has offered the event to every subscriber.
type handoff struct {
	pool  *writerPool
	conns []*conn
}

// handoffBatch is how many connections a handoff gathers before it hands
// them over: the workers start on the first sockets while the event is
// still being queued for the rest.
const handoffBatch = 128

var handoffs = sync.Pool{New: func() any { return &handoff{conns: make([]*conn, 0, handoffBatch)} }}

func (h *handoff) add(p *writerPool, c *conn) {
	h.pool = p
	h.conns = append(h.conns, c)
	if len(h.conns) >= handoffBatch {
		h.flush()
	}
}

// flush hands the gathered connections to the pool.
func (h *handoff) flush() {
	if len(h.conns) > 0 {
		h.pool.pushAll(h.conns)
		clear(h.conns)
		h.conns = h.conns[:0]
	}
}
