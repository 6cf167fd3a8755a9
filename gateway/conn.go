package gateway

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/internal/wsconn"
)

var subscriptionKey = []byte(`,"subscriptionId":`)

// out is one queued frame.
type out struct {
	data []byte
	sub  []byte // quoted subscription id to splice in; nil for none
	seq  uint64 // stream sequence (SSE id); 0 for none
	op   byte   // WebSocket opcode; 0 means text
	// catchUp marks a snapshot or replayed frame: the server chose to send
	// it, so it does not count against the limits that catch slow readers
	// of live events.
	catchUp bool
	// done, if set, runs once the frame has left the queue (taken by the
	// writer, or dropped on close): it hands back a catch-up's turn.
	done func()
	// frag marks the parts of a message written in several frames (a
	// paged snapshot); 0 for a whole message.
	frag byte
	// commit is a live event's commit time (unix milliseconds), for the
	// delivery latency; 0 for other frames.
	commit int64
}

// The parts of a fragmented message. While one is open, every other frame
// waits in conn.held: nothing may come between its parts.
const (
	fragFirst = 1 + iota
	fragMiddle
	fragLast
)

func (o out) size() int {
	n := len(o.data)
	if o.sub != nil {
		n += len(subscriptionKey) + len(o.sub)
	}
	return n
}

// conn is one client connection, WebSocket or SSE. Its outbound queue is
// drained by a writer that exists only while there is something to write
// (WebSocket), or by the request's own goroutine (SSE).
type conn struct {
	g       *Gateway
	authCtx json.RawMessage
	token   atomic.Pointer[jwtauth.Token] // with Config.Tokens: the current token
	expiry  *time.Timer                   // closes the connection at the token's exp
	addr    string
	ctx     context.Context // ends when the connection finishes
	cancel  context.CancelFunc

	nc      net.Conn                 // WebSocket only
	raw     syscall.RawConn          // WebSocket on TCP: nc's socket, for the pool's non-blocking writes
	sse     *http.ResponseController // SSE only: written by the request goroutine
	wake    chan struct{}            // SSE only: queue not empty, or closing
	session string                   // SSE only: the id POST /stream/auth names it by
	post    *sessionPosts            // SSE only

	lastRead atomic.Int64 // unix nanoseconds of the last inbound frame
	// lastSample is when the last latency sample was taken (unix ns).
	lastSample atomic.Int64
	rd         wsconn.Reader // WebSocket only: used by the read loop

	mu       sync.Mutex
	queue    []out
	spare    []out         // the previous batch, reused
	qlive    int           // live frames queued
	qbytes   int           // bytes of live frames queued
	held     []out         // frames waiting for its last part
	hlive    int           // live frames held
	hbytes   int           // bytes of live frames held
	fragTurn chan struct{} // a token while a fragmented message is being queued; see fragTurnChan
	// catchUpsHeld counts the catch-ups whose frames are still queued (at
	// most Config.MaxCatchUps); one that must wait for a turn waits on
	// catchUpFreed, made then (acquireCatchUp), so that a connection
	// holds no channel for them.
	catchUpMu    sync.Mutex    // guards catchUpFreed
	catchUpFreed chan struct{} // closed when a turn is released
	catchUpsHeld atomic.Int32
	fragOpen     bool // the queue ends inside a fragmented message
	writing      bool
	closing      bool
	closeSent    bool
	closeCode    int32 // a WebSocket close code
	// presenceSubs counts the connection's presence subscriptions
	// (reserved); anonID is its identity when it has none.
	presenceSubs int32
	closeMsg     string
	subs         subSet
	anonID       string

	writers sync.WaitGroup // the WebSocket writer, when running
	joins   sync.WaitGroup // join goroutines
}

// sessionPosts is an SSE session's POSTs: kept apart from conn, so that a
// WebSocket, which has none, does not carry them.
type sessionPosts struct {
	mu sync.Mutex // one POST's frames at a time; guards n and at
	n  int        // POSTs taken in the second since at
	at time.Time
}

func (g *Gateway) newConn(adm admission, addr string) *conn {
	c := &conn{g: g, authCtx: adm.ctx, addr: addr}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.lastRead.Store(time.Now().UnixNano())
	if t := adm.token; t != nil {
		c.token.Store(t)
	}
	return c
}

// fragTurnChan returns c.fragTurn, made on first use: most connections
// never page a snapshot, and an idle one should not hold a channel for it.
func (c *conn) fragTurnChan() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fragTurn == nil {
		c.fragTurn = make(chan struct{}, 1)
	}
	return c.fragTurn
}

// acquireCatchUp takes one of the connection's Config.MaxCatchUps
// catch-up turns, waiting until one is released; false when the
// connection ends first.
func (c *conn) acquireCatchUp() bool {
	limit := int32(c.g.cfg.MaxCatchUps)
	for {
		if n := c.catchUpsHeld.Load(); n < limit {
			if c.catchUpsHeld.CompareAndSwap(n, n+1) {
				return true
			}
			continue
		}
		c.catchUpMu.Lock()
		if c.catchUpsHeld.Load() < limit { // released meanwhile
			c.catchUpMu.Unlock()
			continue
		}
		if c.catchUpFreed == nil {
			c.catchUpFreed = make(chan struct{})
		}
		freed := c.catchUpFreed
		c.catchUpMu.Unlock()
		select {
		case <-freed:
		case <-c.ctx.Done():
			return false
		}
	}
}

// releaseCatchUp hands back a turn acquireCatchUp took, and wakes those
// waiting for one.
func (c *conn) releaseCatchUp() {
	c.catchUpsHeld.Add(-1)
	c.catchUpMu.Lock()
	if c.catchUpFreed != nil {
		close(c.catchUpFreed)
		c.catchUpFreed = nil
	}
	c.catchUpMu.Unlock()
}

// enqueue queues o; a connection over its limits is closed with 1008.
func (c *conn) enqueue(o out) { c.enqueueTo(o, nil) }

// enqueueTo is enqueue that, with h set, leaves the hand-off of the
// connection to the writer pool to h.
func (c *conn) enqueueTo(o out, h *handoff) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		if o.done != nil {
			o.done()
		}
		return
	}
	live := !o.catchUp
	if live && (c.qlive+c.hlive >= c.g.cfg.QueueMessages || c.qbytes+c.hbytes+o.size() > c.g.cfg.QueueBytes) {
		queued := c.qlive + c.hlive
		c.mu.Unlock()
		c.slowClose("slow consumer: outbound queue full; reconnect with since", "queued", queued)
		return
	}
	if c.fragOpen && o.frag == 0 {
		c.held = append(c.held, o)
		if live {
			c.hlive++
			c.hbytes += o.size()
		}
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, o)
	if live {
		c.qlive++
		c.qbytes += o.size()
	}
	switch o.frag {
	case fragFirst:
		c.fragOpen = true
	case fragLast:
		c.fragOpen = false
		c.queue = append(c.queue, c.held...)
		c.qlive, c.qbytes = c.qlive+c.hlive, c.qbytes+c.hbytes
		clear(c.held)
		c.held, c.hlive, c.hbytes = c.held[:0], 0, 0
	}
	c.kick(h)
	c.mu.Unlock()
}

// slowClose closes a connection that fell behind, with reason, and logs
// it (rate-limited).
func (c *conn) slowClose(reason string, args ...any) {
	// Logged, then counted: whoever sees the count can read the line.
	c.g.slowLog.Warn(c.g.log, "stream client too slow: closing", append([]any{"remote", c.addr, "reason", reason}, args...)...)
	c.g.slowCloses.Add(1)
	c.shutdown(wsconn.ClosePolicy, reason)
}

// dropQueued empties the queue, held frames included. Callers hold c.mu.
func (c *conn) dropQueued() {
	finished(c.queue)
	finished(c.held)
	c.queue, c.qlive, c.qbytes = nil, 0, 0
	c.held, c.hlive, c.hbytes = nil, 0, 0
}

// afterQueued runs fn once everything queued now has left the queue: at
// once when nothing is queued or the connection is closing.
func (c *conn) afterQueued(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queue
	if len(c.held) > 0 {
		q = c.held
	}
	if c.closing || len(q) == 0 {
		fn()
		return
	}
	last := &q[len(q)-1]
	if prev := last.done; prev != nil {
		last.done = func() { prev(); fn() }
	} else {
		last.done = fn
	}
}

// finished runs the done functions of frames leaving the queue.
func finished(batch []out) {
	for i := range batch {
		if d := batch[i].done; d != nil {
			batch[i].done = nil
			d()
		}
	}
}

// kick starts the writer: the SSE request goroutine, or for a WebSocket a
// turn in the gateway's writer pool, through h when set. Callers hold c.mu.
func (c *conn) kick(h *handoff) {
	if c.sse != nil {
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return
	}
	if !c.writing {
		c.writing = true
		c.writers.Add(1)
		if h != nil {
			h.add(c.g.pool, c)
		} else {
			c.g.pool.push(c)
		}
	}
}

// shutdown starts closing: queued frames are dropped, WebSocket clients get
// a close frame with code and reason, and the connection ends once the peer
// answers, or after wsconn.CloseGrace (plus, for a blocked writer, WriteTimeout).
func (c *conn) shutdown(code int, reason string) { c.close(code, reason, false) }

// closeAfterQueue is shutdown that first writes what is queued.
func (c *conn) closeAfterQueue(code int, reason string) { c.close(code, reason, true) }

func (c *conn) close(code int, reason string, flush bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.closing, c.closeCode, c.closeMsg = true, int32(code), reason
	if !flush {
		c.dropQueued()
	}
	c.kick(nil)
	if c.nc != nil {
		// The peer gets wsconn.CloseGrace to answer the close frame; a writer
		// still busy keeps its own write deadline.
		_ = c.nc.SetReadDeadline(time.Now().Add(wsconn.CloseGrace))
	}
}

// kill closes the socket at once, ending any blocked read or write.
func (c *conn) kill() {
	if c.nc != nil {
		_ = c.nc.Close()
	}
}

// take returns the queued frames and whether a close frame is due.
func (c *conn) take() (batch []out, closeNow bool, code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch, c.queue = c.queue, c.spare[:0]
	finished(batch)
	c.spare = nil
	c.qlive, c.qbytes = 0, 0
	if c.closing && !c.closeSent {
		c.closeSent = true
		return batch, true, int(c.closeCode), c.closeMsg
	}
	return batch, false, 0, ""
}

// recycle hands a written batch back for reuse, or ends the writer when
// nothing is left. It reports whether the writer should go on.
func (c *conn) recycle(batch []out) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.release(batch)
	if len(c.queue) == 0 && (!c.closing || c.closeSent) {
		c.writing = false
		// An idle connection keeps only small queue arrays.
		if cap(c.spare) > idleQueueCap {
			c.spare = nil
		}
		if cap(c.queue) > idleQueueCap {
			c.queue = nil
		}
		return false
	}
	return true
}

// release keeps batch's array for the next take. Callers hold c.mu.
func (c *conn) release(batch []out) {
	clear(batch)
	if c.spare == nil && cap(batch) <= 1024 {
		c.spare = batch[:0]
	}
}

// idleQueueCap is the largest queue array an idle connection keeps.
const idleQueueCap = 8

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// build appends everything queued, and the close frame when one is due,
// to buf. It reports whether the close frame is in.
func (c *conn) build(buf []byte) ([]byte, []out, bool) {
	batch, closeNow, code, reason := c.take()
	for _, o := range batch {
		buf = appendWSFrame(buf, o)
	}
	if closeNow {
		buf = wsconn.AppendClose(buf, code, reason)
	}
	return buf, batch, closeNow
}

func (c *conn) closeWrite() {
	if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
}

// turn is one pool worker's turn on c: it writes everything queued, with
// one non-blocking write system call on a TCP socket (else with a short
// deadline). It reports whether c has more to write (and so goes back in
// the pool). A socket that cannot take the bytes at once gets its own
// goroutine, with the rest of the bytes, so that it never holds a worker.
func (c *conn) turn(w *poolWriter) (again bool) {
	buf, batch, closeNow := c.build(w.buf[:0])
	w.buf = buf
	if len(buf) > 0 {
		n, err := w.write(c, buf)
		if err == nil && n < len(buf) {
			commits := commitTimes(nil, batch)
			c.mu.Lock()
			c.release(batch) // the writer goes on, on its own goroutine
			c.mu.Unlock()
			c.slow(bytes.Clone(buf[n:]), commits, closeNow)
			return false
		}
		if err != nil {
			c.fail()
			c.writers.Done()
			return false
		}
		c.delivered(batch, TransportWebSocket)
	}
	if closeNow {
		c.closeWrite()
	}
	if c.recycle(batch) {
		return true
	}
	c.writers.Done()
	return false
}

// poolWriteWait is how long a pool worker lets one socket write block,
// on a socket it cannot write to without blocking (not TCP).
const poolWriteWait = 2 * time.Millisecond

// poolWriter is a pool worker's writing state: its buffer, and a write
// function made once, so that a write allocates nothing.
type poolWriter struct {
	buf []byte
	// The raw write's argument and results.
	out   []byte
	n     int
	err   error
	rawFn func(fd uintptr)
}

func newPoolWriter() *poolWriter {
	w := &poolWriter{buf: make([]byte, 0, 16<<10)}
	w.rawFn = w.rawWrite
	return w
}

// write writes as much of buf to c's socket as it takes within
// poolWriteWait: a short count with a nil error means the socket's buffer
// stayed full. A TCP socket gets one write system call, with no deadline
// and no wait in the poller, and a deadline write only for what its full
// buffer did not take; another kind of socket a deadline write.
func (w *poolWriter) write(c *conn, buf []byte) (int, error) {
	n := 0
	if c.raw != nil {
		// Control, not Write: the socket stays open while rawWrite runs,
		// and the poller's write lock and state, which a write that
		// never waits in the poller has no use for, are left alone (5%
		// of a gateway's CPU at a light rate). A socket has one writer
		// at a time: this worker, or its own goroutine (slow).
		w.out, w.n, w.err = buf, 0, nil
		err := c.raw.Control(w.rawFn)
		n, err = w.n, cmp.Or(err, w.err)
		w.out, w.err = nil, nil
		if err != nil || n == len(buf) {
			return n, err
		}
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(poolWriteWait))
	m, err := c.nc.Write(buf[n:])
	if c.raw != nil {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		err = nil
	}
	return n + m, err
}

// rawWrite is one non-blocking write of w.out to fd; it never asks the
// poller to wait.
func (w *poolWriter) rawWrite(fd uintptr) {
	for w.n < len(w.out) {
		n, err := rawWriteFD(fd, w.out[w.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return
		case err != nil:
			w.err = err
			return
		case n == 0:
			w.err = io.ErrUnexpectedEOF
			return
		}
		w.n += n
	}
}

// slow hands a socket whose kernel buffer is full to its own goroutine: it
// writes tail (the rest of an interrupted write, with the commit times of
// its live events) and then everything queued with the full write
// timeout, until the queue is empty.
func (c *conn) slow(tail []byte, commits []int64, closeSent bool) {
	go func() {
		defer c.writers.Done()
		buf := tail
		for {
			if len(buf) > 0 {
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.g.cfg.WriteTimeout))
				if _, err := c.nc.Write(buf); err != nil {
					c.fail()
					return
				}
				c.deliveredAt(commits, TransportWebSocket)
			}
			if closeSent {
				c.closeWrite()
			}
			var batch []out
			buf, batch, closeSent = c.build(buf[:0])
			commits = commitTimes(commits[:0], batch)
			if len(buf) > 0 {
				c.mu.Lock()
				c.release(batch)
				c.mu.Unlock()
			} else if !c.recycle(batch) {
				return
			}
		}
	}()
}

// fail ends a connection whose socket broke.
func (c *conn) fail() {
	c.mu.Lock()
	c.closing, c.closeSent, c.writing = true, true, false
	c.dropQueued()
	c.mu.Unlock()
	if c.nc != nil {
		_ = c.nc.Close()
	}
}

func appendWSFrame(buf []byte, o out) []byte {
	op := o.op
	if op == 0 {
		op = wsconn.OpText
	}
	switch o.frag {
	case 0:
		buf = wsconn.AppendHeader(buf, op, true, o.size())
	case fragFirst: // continuation frames follow
		buf = wsconn.AppendHeader(buf, op, false, o.size())
	default:
		buf = wsconn.AppendHeader(buf, wsconn.OpContinuation, o.frag == fragLast, o.size())
	}
	return appendPayload(buf, o)
}

func appendPayload(buf []byte, o out) []byte {
	if o.sub == nil || len(o.data) == 0 {
		return append(buf, o.data...)
	}
	buf = append(buf, o.data[:len(o.data)-1]...)
	buf = append(buf, subscriptionKey...)
	buf = append(buf, o.sub...)
	return append(buf, '}')
}

// ping sends a keep-alive, or closes a WebSocket silent for longer than dead.
func (c *conn) ping(now time.Time, dead time.Duration) {
	if c.sse != nil {
		c.enqueue(out{op: wsconn.OpPing})
		return
	}
	if now.Sub(time.Unix(0, c.lastRead.Load())) > dead {
		c.shutdown(wsconn.CloseGoingAway, "ping timeout")
		return
	}
	c.enqueue(out{op: wsconn.OpPing, data: strconv.AppendInt(nil, now.Unix(), 10)})
}

// finish ends the connection once its reader is done: it stops the
// subscriptions (firing stream:leave), waits for its goroutines and leaves
// the gateway.
func (c *conn) finish() {
	c.shutdown(wsconn.CloseNormal, "")
	c.cancel()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.joins.Wait()
	c.mu.Lock()
	subs := c.subs.removeIf(nil)
	c.mu.Unlock()
	for _, s := range subs {
		c.drop(s)
	}
	c.writers.Wait()
	if c.nc != nil {
		_ = c.nc.Close()
	}
	c.g.remove(c)
}
