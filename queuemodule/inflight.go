package queuemodule

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// budget counts, per function, the bytes of durable-topic messages this
// engine holds (fetched and not yet acknowledged, or reserved for a fetch
// under way), so that a function that never answers holds at most limit
// of them, and all functions together at most total. The total is shared
// first come, but a function holding more than its fair share (total
// divided by the functions subscribed) takes more only from what no
// other function is owed up to its own share: so however many functions
// stall, every other one can still reach its share. Safe for concurrent
// use.
type budget struct {
	limit, total int64

	mu      sync.Mutex
	bytes   map[string]int64
	held    int64          // sum of bytes
	subs    map[string]int // fetch loops, by function
	changed chan struct{}  // closed, and replaced, when bytes go down or shares change
}

func newBudget(limit, total int64) *budget {
	return &budget{limit: limit, total: total, bytes: make(map[string]int64), subs: make(map[string]int),
		changed: make(chan struct{})}
}

// join counts a fetch loop of fn in the shares until leave.
func (b *budget) join(fn string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[fn]++
	b.wake()
}

func (b *budget) leave(fn string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs[fn]--; b.subs[fn] <= 0 {
		delete(b.subs, fn)
	}
	b.wake()
}

// wake tells waiting acquires to look again. Callers hold b.mu.
func (b *budget) wake() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// fits reports whether fn may take n more bytes now: one message of any
// size when fn holds nothing (and when the engine holds nothing, past the
// total too), else within fn's limit, the total, and, past fn's fair
// share, what the other functions are not owed. Callers hold b.mu.
func (b *budget) fits(fn string, n int64) bool {
	used := b.bytes[fn]
	switch {
	case used != 0 && used+n > b.limit:
		return false
	case b.held == 0:
		return true
	case b.held+n > b.total:
		return false
	}
	share := min(b.limit, b.total/int64(max(len(b.subs), 1)))
	if used+n <= share {
		return true
	}
	owed := int64(0)
	for f := range b.subs {
		if f != fn {
			owed += max(0, share-b.bytes[f])
		}
	}
	return b.held+n+owed <= b.total
}

// acquire reserves n bytes for fn once they fit; false when ctx ends
// first.
func (b *budget) acquire(ctx context.Context, fn string, n int64) bool {
	for {
		b.mu.Lock()
		if b.fits(fn, n) {
			b.bytes[fn] += n
			b.held += n
			b.mu.Unlock()
			return true
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// tryAcquire reserves n bytes for fn if they fit now.
func (b *budget) tryAcquire(fn string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.fits(fn, n) {
		return false
	}
	b.bytes[fn] += n
	b.held += n
	return true
}

// add changes fn's bytes by n (a release when negative).
func (b *budget) add(fn string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held += n
	if b.bytes[fn] += n; b.bytes[fn] <= 0 {
		delete(b.bytes, fn)
	}
	if n < 0 {
		b.wake()
	}
}

func (b *budget) used(fn string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes[fn]
}

// InFlightBytes is how many bytes of durable-topic messages this engine
// holds for fn: fetched and not yet acknowledged, or reserved for a fetch.
func (m *Module) InFlightBytes(fn string) int64 { return m.inflight.used(fn) }

// fetchWait bounds one fetch: the bytes it reserves are held that long
// when the topic is idle.
const fetchWait = 2 * time.Second

// fetchLoop feeds run the messages of one durable subscription until ctx
// ends. Each fetch asks for as many messages as the subscription has free
// concurrency slots and its function has budget for, reserving the
// largest message NATS carries for each, and keeps what each message it
// gets takes. So an engine holds at most concurrency messages of the
// subscription, InFlightBytes of the function and InFlightBytesTotal in
// all, however slow its calls are. A message it fetches runs until acknowledged (or dead-lettered), or
// until the engine closes, when JetStream redelivers it after the ack wait.
func (m *Module) fetchLoop(ctx context.Context, cons jetstream.Consumer, fn string, concurrency int, run func(jetstream.Msg)) {
	slots := make(chan struct{}, concurrency)
	largest := m.cfg.Conn.MaxPayload()
	m.inflight.join(fn)
	defer m.inflight.leave(fn)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !m.inflight.acquire(ctx, fn, largest) {
			return
		}
		n := 1
	more:
		for n < concurrency {
			select {
			case slots <- struct{}{}:
			default:
				break more
			}
			if !m.inflight.tryAcquire(fn, largest) {
				<-slots
				break
			}
			n++
		}
		got, err := m.fetch(ctx, cons, n, func(msg jetstream.Msg) bool {
			size := msgBytes(msg)
			m.inflight.add(fn, size-largest)
			if m.start(func() {
				defer func() { m.inflight.add(fn, -size); <-slots }()
				run(msg)
			}) {
				return true
			}
			m.inflight.add(fn, -size)
			<-slots
			return false
		})
		for range n - got {
			m.inflight.add(fn, -largest)
			<-slots
		}
		if err != nil && !m.pause(ctx, err, fn) {
			return
		}
	}
}

// fetch asks for up to n messages, waiting up to fetchWait, and hands each
// to start as it comes; it returns how many it handed over. A false from
// start (the module is stopping) ends it.
func (m *Module) fetch(ctx context.Context, cons jetstream.Consumer, n int, start func(jetstream.Msg) bool) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		if !start(msg) {
			cancel()
			for range batch.Messages() {
				// not acknowledged: redelivered after the ack wait
			}
			return got, nil
		}
	}
	if err := batch.Error(); err != nil && fctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) {
		return got, err
	}
	return got, nil
}

// pause waits a second after a failed fetch (JetStream away, the
// consumer removed), logging it; false when ctx ends first.
func (m *Module) pause(ctx context.Context, err error, fn string) bool {
	if ctx.Err() != nil {
		return false
	}
	m.log.Warn("durable subscriber fetch failed: retrying", "function_id", fn, "error", err)
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// msgBytes is what msg takes in memory, roughly: its data, headers and
// subjects.
func msgBytes(msg jetstream.Msg) int64 {
	return int64(len(msg.Data()) + headerBytes(msg.Headers()) + len(msg.Subject()) + len(msg.Reply()))
}
