package streammodule

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/tracing"
)

// DefaultPublishQueueBytes bounds the events committed and not yet handed
// to the Publisher.
const DefaultPublishQueueBytes = 16 << 20

// publishQueue hands committed events to the Publisher from one goroutine
// of its own, in commit order (so in sequence order per group), so that
// the store's group lock is never held while NATS takes an event. It is
// bounded in bytes: a commit that finds it full waits until the goroutine
// has published enough, so no event is dropped for want of room and the memory it holds stays
// under its bound (one event larger than the bound still goes, alone).
//
// enqueue may be called concurrently; close waits until every event
// enqueued is published, then stops the goroutine, which starts with the
// first event.
type publishQueue struct {
	p        Publisher
	log      *slog.Logger
	tracer   trace.Tracer // nil: tracing off
	maxBytes int

	mu      sync.Mutex
	cond    *sync.Cond // signals both room and events
	q       []pubEvent
	bytes   int
	waiting int    // commits waiting for room
	ticket  uint64 // the next waiter's turn
	turn    uint64 // the turn of the waiter served next
	started bool
	closed  bool
	done    chan struct{}

	published, failed atomic.Int64
}

type pubEvent struct {
	stream, group string
	seq           uint64
	frame         []byte
	trace         trace.SpanContext // of the write that committed it; invalid when not traced
}

func newPublishQueue(p Publisher, maxBytes int, log *slog.Logger, tracer trace.Tracer) *publishQueue {
	q := &publishQueue{p: p, log: log, tracer: tracer, maxBytes: maxBytes, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// enqueue queues ev, waiting for room. Commits that wait are served in
// the order they came: a later one does not pass one that waits, even if
// it would fit, so a large event is not starved by a run of small ones.
func (q *publishQueue) enqueue(ev pubEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiting > 0 || q.full(len(ev.frame)) {
		turn := q.ticket
		q.ticket++
		q.waiting++
		for (turn != q.turn || q.full(len(ev.frame))) && !q.closed {
			q.cond.Wait()
		}
		q.waiting--
		q.turn++
		q.cond.Broadcast() // the next in line may fit too
	}
	if q.closed {
		q.publish(ev) // after close: nothing is waiting to publish it
		return
	}
	if !q.started {
		q.started = true
		go q.run()
	}
	q.q = append(q.q, ev)
	q.bytes += len(ev.frame)
	q.cond.Broadcast()
}

// full reports whether an event of n bytes must wait for room (one
// larger than the bound goes once the queue is empty).
func (q *publishQueue) full(n int) bool { return q.bytes > 0 && q.bytes+n > q.maxBytes }

func (q *publishQueue) run() {
	defer close(q.done)
	var batch []pubEvent
	for {
		q.mu.Lock()
		for len(q.q) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.q) == 0 {
			q.mu.Unlock()
			return
		}
		batch, q.q = q.q, batch[:0]
		q.mu.Unlock()
		n := 0
		for i, ev := range batch {
			q.publish(ev)
			n += len(ev.frame)
			batch[i] = pubEvent{}
		}
		q.mu.Lock()
		q.bytes -= n
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

func (q *publishQueue) publish(ev pubEvent) {
	ctx, span := q.startPublish(ev)
	err := q.p.Publish(ctx, ev.stream, ev.group, ev.frame)
	if span != nil {
		var code string
		if err != nil {
			span.RecordError(err)
			code = "unavailable"
		}
		tracing.End(span, code)
	}
	if err == nil {
		q.published.Add(1)
		return
	}
	q.failed.Add(1)
	q.log.Error("stream event not published", "stream", ev.stream, "group", ev.group, "seq", ev.seq, "error", err)
}

// close publishes what is queued and stops the goroutine. It may be
// called more than once.
func (q *publishQueue) close() {
	q.mu.Lock()
	q.closed = true
	started := q.started
	q.cond.Broadcast()
	q.mu.Unlock()
	if started {
		<-q.done
	}
}
