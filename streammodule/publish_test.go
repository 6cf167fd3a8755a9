package streammodule_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/streamtest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
)

// gatedPublisher records what it publishes, and holds every Publish until
// the gate opens.
type gatedPublisher struct {
	gate  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	seqs  map[string][]string // group > frames' seq, in order
	order []string            // groups of the frames, in order
	n     int
}

func (p *gatedPublisher) Publish(_ context.Context, _, group string, frame []byte) error {
	<-p.gate
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seqs[group] = append(p.seqs[group], string(frame))
	p.order = append(p.order, group)
	p.n++
	return nil
}

func (p *gatedPublisher) open() { p.once.Do(func() { close(p.gate) }) }

// startGated runs a stream module (memory store) on an engine, publishing
// to a gated publisher through a queue of queueBytes; the gate opens and
// the module closes when the test ends.
func startGated(t *testing.T, queueBytes int) (*gatedPublisher, *engine.Engine, *streammodule.Module) {
	t.Helper()
	pub := &gatedPublisher{gate: make(chan struct{}), seqs: map[string][]string{}}
	e := moduletest.Start(t, "")
	m, err := streammodule.New(streammodule.Config{
		OpenStore:         func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil },
		Publisher:         pub,
		PublishQueueBytes: queueBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pub.open()
		m.Close()
	})
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	return pub, e, m
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
	pub, e, m := startGated(t, 4<<10)
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
	pub.open()
	wg.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
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

// TestFullPublishQueueServesWaitersInOrder: commits waiting for room in
// the publish queue get it in the order they came. A large event that
// waits is not overtaken by smaller ones that would fit sooner, so no
// writer starves while others keep the queue busy.
func TestFullPublishQueueServesWaitersInOrder(t *testing.T) {
	pub, e, m := startGated(t, 2<<10)
	set := func(group string, size int) error {
		_, err := e.Trigger(context.Background(), engine.Call{FunctionID: streammodule.FnSet,
			Payload: []byte(fmt.Sprintf(`{"stream_name":"s","group_id":%q,"item_id":"i","data":%q}`, group, strings.Repeat("x", size)))})
		return err
	}
	// 1.2 KiB held by the stuck publisher: a 1.5 KiB event must wait.
	if err := set("first", 1200); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 8)
	write := func(group string, size int) {
		go func() {
			if err := set(group, size); err != nil {
				t.Error(err)
			}
			done <- group
		}()
	}
	write("big", 1500)
	poll.CheckFor(t, 10*time.Second, poll.Holds("the large write waits", func() bool { return streammodule.PublishWaiting(m) == 1 }))
	// 100 bytes would fit beside the first event, but they came later.
	for i := range 3 {
		write("small"+strconv.Itoa(i), 100)
		poll.CheckFor(t, 10*time.Second, poll.Holds("the small write waits behind the large one", func() bool {
			select {
			case g := <-done:
				t.Fatalf("%s went into the queue ahead of the large write that waited before it", g)
			default:
			}
			return streammodule.PublishWaiting(m) == 2+i
		}))
	}
	pub.open()
	for range 4 {
		<-done
	}
	m.Close()
	if got, want := strings.Join(pub.order, ","), "first,big,small0,small1,small2"; got != want {
		t.Fatalf("published %s, want %s", got, want)
	}
}

// TestRefusedEventIsPublishedAgain: an event NATS refuses (the engine's
// connection is down and buffers nothing) is published again once NATS
// takes it, without another write to its group, so subscribers converge.
func TestRefusedEventIsPublishedAgain(t *testing.T) {
	ns := natstest.Start(t)
	p := enginetest.NewProxy(t, ns.Addr().String())
	nc, err := nats.Connect("nats://"+p.Addr, nats.ReconnectBufSize(-1), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e := moduletest.Start(t, "")
	m, err := streammodule.New(streammodule.Config{
		OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil },
		Publisher: natsfanout.NewPublisher(nc),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	cancel, err := natsfanout.NewSubscriber(natstest.Connect(t, ns)).Subscribe("s", "g", func(ev []byte) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(ev))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	received := func(seq string) func() error {
		return poll.Holds("the subscriber has the event of "+seq, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) > 0 && containsSeq(got[len(got)-1], seq)
		})
	}
	set := func(n int) {
		t.Helper()
		if _, err := e.Trigger(context.Background(), engine.Call{FunctionID: streammodule.FnSet,
			Payload: []byte(fmt.Sprintf(`{"stream_name":"s","group_id":"g","item_id":"i","data":%d}`, n))}); err != nil {
			t.Fatal(err)
		}
	}
	set(1)
	poll.CheckFor(t, 10*time.Second, received(`"seq":1`))
	p.Partition()
	poll.CheckFor(t, 10*time.Second, poll.Holds("the publisher's connection is down", func() bool { return nc.Status() == nats.RECONNECTING }))
	set(2)
	poll.CheckFor(t, 10*time.Second, poll.Holds("NATS refused the event", func() bool { return m.Stats().PublishErrors >= 1 }))
	p.Heal()
	poll.CheckFor(t, 10*time.Second, received(`"seq":2`))
}
