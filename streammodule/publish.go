package streammodule

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/ratelog"
	"github.com/trinehq/trine/internal/tracing"
)

// Retries of an event NATS refused: the delay starts at retryMin and
// doubles up to retryMax.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
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
//
// An event the Publisher refuses (NATS is unreachable and buffers
// nothing more) is published again, after 100 ms doubling up to 5 s,
// until NATS takes it or a later event of its group goes out: otherwise
// subscribers would sit on a stale group until its next write. One event
// per group is kept for this, the group's latest (a gateway that gets it
// catches up on the ones before from history), and at most maxBytes of
// them together; past that the refused event is dropped and logged.
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

	retry      map[groupKey]*retryEvent // refused events to publish again; run's own
	retryBytes int
	wake       *time.Timer // broadcasts cond when the next retry is due
	refusals   ratelog.Limiter

	published, failed atomic.Int64
}

type pubEvent struct {
	stream, group string
	seq           uint64
	frame         []byte
	trace         trace.SpanContext // of the write that committed it; invalid when not traced
}

type retryEvent struct {
	ev    pubEvent
	delay time.Duration
	at    time.Time
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
		_ = q.publish(ev, true) // after close: nothing is waiting to publish it
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
		for len(q.q) == 0 && !q.closed && !q.retryDue() {
			q.cond.Wait()
		}
		if len(q.q) == 0 && q.closed {
			if q.wake != nil {
				q.wake.Stop()
			}
			q.mu.Unlock()
			return
		}
		batch, q.q = q.q, batch[:0]
		q.mu.Unlock()
		q.retryNow() // older than the batch: first
		n := 0
		for i, ev := range batch {
			q.publishOnce(ev, 0)
			n += len(ev.frame)
			batch[i] = pubEvent{}
		}
		q.mu.Lock()
		q.bytes -= n
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// retryDue reports whether a refused event is due for another try, and
// otherwise has the timer wake run for the next one. Called with mu held.
func (q *publishQueue) retryDue() bool {
	if len(q.retry) == 0 {
		return false
	}
	next := time.Time{}
	for _, r := range q.retry {
		if next.IsZero() || r.at.Before(next) {
			next = r.at
		}
	}
	d := time.Until(next)
	if d <= 0 {
		return true
	}
	if q.wake == nil {
		q.wake = time.AfterFunc(d, func() {
			q.mu.Lock()
			q.cond.Broadcast()
			q.mu.Unlock()
		})
	} else {
		q.wake.Reset(d)
	}
	return false
}

// retryNow publishes again the refused events whose time has come.
func (q *publishQueue) retryNow() {
	now := time.Now()
	for k, r := range q.retry {
		if r.at.After(now) {
			continue
		}
		delete(q.retry, k)
		q.retryBytes -= len(r.ev.frame)
		q.publishOnce(r.ev, r.delay)
	}
}

// publishOnce publishes ev; delay is the wait before this try (0 for the
// first). A refused event is kept to try again, the latest of its group.
func (q *publishQueue) publishOnce(ev pubEvent, delay time.Duration) {
	k := groupKey{ev.stream, ev.group}
	if err := q.publish(ev, delay == 0); err == nil {
		if r, ok := q.retry[k]; ok && r.ev.seq <= ev.seq { // the gateways catch up from this one
			delete(q.retry, k)
			q.retryBytes -= len(r.ev.frame)
		}
		if delay > 0 {
			q.log.Info("stream event published after NATS refused it", "stream", ev.stream, "group", ev.group, "seq", ev.seq)
		}
		return
	}
	if q.retry == nil {
		q.retry = make(map[groupKey]*retryEvent)
	}
	if old, ok := q.retry[k]; ok {
		if old.ev.seq > ev.seq {
			return
		}
		q.retryBytes -= len(old.ev.frame)
		delete(q.retry, k)
	}
	if q.retryBytes > 0 && q.retryBytes+len(ev.frame) > q.maxBytes {
		q.log.Error("stream event refused by NATS and not retried: too many refused events held", "stream", ev.stream, "group", ev.group, "seq", ev.seq)
		return
	}
	delay = min(max(2*delay, retryMin), retryMax)
	q.retry[k] = &retryEvent{ev: ev, delay: delay, at: time.Now().Add(delay)}
	q.retryBytes += len(ev.frame)
}

func (q *publishQueue) publish(ev pubEvent, first bool) error {
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
		return nil
	}
	if first {
		q.failed.Add(1)
		q.refusals.Warn(q.log, "stream event not published; retrying", "stream", ev.stream, "group", ev.group, "seq", ev.seq, "error", err)
	}
	return err
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
