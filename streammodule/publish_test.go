package streammodule_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/streamtest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
)

// gatedPublisher records what it publishes, and holds every Publish until
// the gate opens.
type gatedPublisher struct {
	gate chan struct{}
	mu   sync.Mutex
	seqs map[string][]string // group > frames' seq, in order
	n    int
}

func (p *gatedPublisher) Publish(_ context.Context, _, group string, frame []byte) error {
	<-p.gate
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seqs[group] = append(p.seqs[group], string(frame))
	p.n++
	return nil
}

func (p *gatedPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// TestWritesDoNotWaitForPublishing: a write returns while the publisher
// is stuck on an earlier event of its group (the store's group lock is
// not held while it publishes); once it is free every event goes out, in
// sequence order per group; and with the queue full, writes wait instead
// of dropping events.
func TestWritesDoNotWaitForPublishing(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), seqs: map[string][]string{}}
	e := moduletest.Start(t, "")
	m, err := streammodule.New(streammodule.Config{
		OpenStore:         func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil },
		Publisher:         pub,
		PublishQueueBytes: 4 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			close(pub.gate)
			m.Close()
		}
	})
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	set := func(group string, n int) error {
		_, err := e.Trigger(context.Background(), engine.Call{FunctionID: streammodule.FnSet,
			Payload: []byte(fmt.Sprintf(`{"stream_name":"s","group_id":%q,"item_id":"i%d","data":{"n":%d}}`, group, n%3, n))})
		return err
	}
	done := make(chan error, 1)
	go func() {
		for n := range 4 {
			if err := set("g", n); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writes wait for the publisher")
	}

	// Fill the 4 KiB queue: writes then wait, and none is lost.
	const writers, each = 8, 40
	var wg sync.WaitGroup
	var written atomic.Int64
	for w := range writers {
		wg.Go(func() {
			for n := range each {
				if err := set("g"+strconv.Itoa(w), n); err != nil {
					t.Error(err)
					return
				}
				written.Add(1)
			}
		})
	}
	// The writers stall once the queue is full.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last, still := int64(-1), 0
	for deadline := time.Now().Add(10 * time.Second); still < 5; {
		if time.Now().After(deadline) {
			t.Fatal("the writers never stalled on the full queue")
		}
		if n := written.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
		<-tick.C
	}
	if last >= writers*each {
		t.Fatalf("all %d writes went through with the publisher stuck and a 4 KiB queue", last)
	}
	close(pub.gate)
	wg.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if got, want := pub.count(), 4+writers*each; got != want {
		t.Fatalf("published %d events, want %d", got, want)
	}
	for g, frames := range pub.seqs {
		for i, f := range frames {
			if want := fmt.Sprintf(`"seq":%d`, i+1); !containsSeq(f, want) {
				t.Fatalf("group %s: event %d is %s, want %s (commit order)", g, i, f, want)
			}
		}
	}
}

func containsSeq(frame, want string) bool {
	for i := 0; i+len(want) <= len(frame); i++ {
		if frame[i:i+len(want)] == want && (i+len(want) == len(frame) || frame[i+len(want)] < '0' || frame[i+len(want)] > '9') {
			return true
		}
	}
	return false
}

// TestStatsCountPublishesAndHistory: every committed event is counted
// once published to a real NATS, and the history's events and bytes
// follow what it holds.
func TestStatsCountPublishesAndHistory(t *testing.T) {
	s := streamtest.Start(t, streammodule.Config{HistorySize: 2})
	for i := range 3 {
		s.Call(t, streammodule.FnSet, map[string]any{"stream_name": "s", "group_id": "g", "item_id": "a", "data": i})
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("3 events published", func() bool { return s.Module.Stats().Published == 3 }))
	st := s.Module.Stats()
	if st.HistoryEvents != 2 || st.HistoryBytes < 2*len(`{"data":0}`) || st.PublishErrors != 0 {
		t.Fatalf("Stats() = %+v, want 2 events of history and no publish errors", st)
	}
}
