package natsfanout_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

type inbox struct {
	mu  sync.Mutex
	got []string
}

func (b *inbox) add(p []byte) { b.mu.Lock(); b.got = append(b.got, string(p)); b.mu.Unlock() }
func (b *inbox) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

// TestFanoutIsolationAndInterest: over a real embedded nats-server, events
// reach exactly the subscribers of their group, in order, whatever
// characters the names hold; interest is dropped with the last subscriber.
func TestFanoutIsolationAndInterest(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	pub := natsfanout.NewPublisher(natstest.Connect(t, ns))
	subNC := natstest.Connect(t, ns)
	sub := natsfanout.NewSubscriber(subNC)

	groups := [][2]string{{"chat", "a"}, {"chat", "a.b"}, {"chat", "*"}, {"chat", ">"}, {"chat.a", "b"}, {"chat", "a b"}, {"émoji 🎉", ""}}
	boxes := make([]*inbox, len(groups))
	var cancels []func()
	for i, g := range groups {
		boxes[i] = &inbox{}
		c, err := sub.Subscribe(g[0], g[1], boxes[i].add)
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, c)
	}
	extra := &inbox{}
	cancelExtra, err := sub.Subscribe("chat", "a", extra.add) // a second watcher shares the interest
	if err != nil {
		t.Fatal(err)
	}
	if n := sub.Groups(); n != len(groups) {
		t.Fatalf("Groups() = %d, want %d", n, len(groups))
	}
	if err := subNC.Flush(); err != nil {
		t.Fatal(err)
	}
	const per = 20
	for n := range per {
		for i, g := range groups {
			if err := pub.Publish(t.Context(), g[0], g[1], fmt.Appendf(nil, "%d:%d", i, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for i, b := range boxes {
		for len(b.list()) < per && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		got := b.list()
		if len(got) != per {
			t.Fatalf("group %q/%q got %d events, want %d: %v", groups[i][0], groups[i][1], len(got), per, got)
		}
		for n, ev := range got {
			if want := fmt.Sprintf("%d:%d", i, n); ev != want {
				t.Fatalf("group %q/%q event %d = %s, want %s (leak or reorder)", groups[i][0], groups[i][1], n, ev, want)
			}
		}
	}
	if len(extra.list()) != per {
		t.Fatalf("second watcher of chat/a got %d events, want %d", len(extra.list()), per)
	}
	cancels[0]()
	if n := sub.Groups(); n != len(groups) {
		t.Fatalf("interest dropped while chat/a still has a watcher: %d groups", n)
	}
	cancelExtra()
	cancelExtra() // idempotent
	for _, c := range cancels[1:] {
		c()
	}
	if n := sub.Groups(); n != 0 {
		t.Fatalf("Groups() after every cancel = %d, want 0", n)
	}
	if n := subNC.NumSubscriptions(); n != 0 {
		t.Fatalf("NATS subscriptions left: %d", n)
	}
}
