package wsconn

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
)

// ErrQueueFull is Queue.Put's error when a message would take the queue
// past its byte bound.
var ErrQueueFull = errors.New("wsconn: outbound queue full")

// Queue is a socket's outbound queue of pre-framed messages, bounded in
// messages and in bytes, and drained by Run, which writes every message
// waiting at the time in one system call (up to MaxBatch bytes).
type Queue struct {
	c        *Conn
	ctx      context.Context // the connection's: ends waits and Run
	ch       chan []byte
	bytes    atomic.Int64
	maxBytes int64
}

// MaxBatch is how many bytes Run gathers for one write.
const MaxBatch = 64 << 10

// NewQueue is c's queue of up to messages messages and maxBytes bytes,
// for as long as ctx lasts.
func NewQueue(ctx context.Context, c *Conn, messages int, maxBytes int64) *Queue {
	return &Queue{c: c, ctx: ctx, ch: make(chan []byte, messages), maxBytes: maxBytes}
}

// Bytes is what is queued, in bytes.
func (q *Queue) Bytes() int64 { return q.bytes.Load() }

// TryPut queues b if the queue has room for it now, in messages and bytes.
func (q *Queue) TryPut(b []byte) bool {
	n := int64(len(b))
	if q.bytes.Load()+n > q.maxBytes {
		return false
	}
	select {
	case q.ch <- b:
		q.bytes.Add(n)
		return true
	default:
		return false
	}
}

// Put queues b, waiting for room in messages until ctx or the
// connection ends (their error). A message that would take the queue past
// its bytes fails at once with ErrQueueFull: a peer that does not read
// holds a bounded amount.
func (q *Queue) Put(ctx context.Context, b []byte) error {
	n := int64(len(b))
	if q.bytes.Load()+n > q.maxBytes {
		return ErrQueueFull
	}
	q.bytes.Add(n)
	if err := q.wait(ctx, b); err != nil {
		q.bytes.Add(-n)
		return err
	}
	return nil
}

// Push queues b whatever its bytes, waiting for room in messages until
// the connection ends: for messages whose bytes the caller bounds itself
// (answers the peer is owed).
func (q *Queue) Push(b []byte) error {
	n := int64(len(b))
	q.bytes.Add(n)
	if err := q.wait(q.ctx, b); err != nil {
		q.bytes.Add(-n)
		return err
	}
	return nil
}

func (q *Queue) wait(ctx context.Context, b []byte) error {
	select {
	case q.ch <- b:
		return nil
	default:
	}
	select {
	case q.ch <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-q.ctx.Done():
		return q.ctx.Err()
	}
}

// gather appends what is queued now to batch, up to MaxBatch bytes.
func (q *Queue) gather(batch []byte) []byte {
	for len(batch) < MaxBatch {
		select {
		case b := <-q.ch:
			batch = append(batch, b...)
		default:
			return batch
		}
	}
	return batch
}

// Run writes the queue until the connection ends (nil) or a write fails
// (its error).
func (q *Queue) Run() error {
	var batch []byte
	for {
		select {
		case b := <-q.ch:
			batch = q.gather(append(batch[:0], b...))
			if len(batch) < MaxBatch {
				// Goroutines made runnable with this message (calls
				// whose answers arrived in the same read, say) may be
				// about to queue more: let them run first, so that
				// one write sends them all. With nothing else to run
				// this costs a trip through the scheduler, far less
				// than the write it can save.
				runtime.Gosched()
				batch = q.gather(batch)
			}
			q.bytes.Add(-int64(len(batch)))
			if err := q.c.Write(batch); err != nil {
				return err
			}
			if cap(batch) > 4*MaxBatch {
				batch = nil // do not keep a large message's buffer
			}
		case <-q.ctx.Done():
			return nil
		}
	}
}
