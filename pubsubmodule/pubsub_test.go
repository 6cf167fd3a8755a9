package pubsubmodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/pubsubmodule"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one engine with the pubsub module and calls routed between
// engines over NATS, wired as trine engine wires them.
type node struct {
	e *engine.Engine
	m *pubsubmodule.Module
}

func startNode(t *testing.T, ns *server.Server, cfg pubsubmodule.Config) *node {
	t.Helper()
	e := moduletest.Start(t, ns.ClientURL())
	cfg.Conn = natstest.Connect(t, ns)
	m, err := pubsubmodule.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &node{e: e, m: m}
}

func (n *node) publish(t *testing.T, payload string) error {
	t.Helper()
	_, err := n.e.Trigger(context.Background(), engine.Call{FunctionID: "publish", Payload: []byte(payload)})
	return err
}

// serve registers fn as a worker's function on n, counting its calls.
func (n *node) serve(t *testing.T, fn string, h func(payload []byte)) *engine.Session {
	t.Helper()
	p := &peer{h: h}
	s, err := n.e.Attach(engine.WorkerInfo{Name: "test"}, p)
	if err != nil {
		t.Fatal(err)
	}
	p.s.Store(s)
	t.Cleanup(s.Close)
	if err := s.RegisterFunction(fn, ""); err != nil {
		t.Fatal(err)
	}
	return s
}

func subscribe(t *testing.T, s *engine.Session, id, fn, topic string) {
	t.Helper()
	cfg, _ := json.Marshal(map[string]string{"topic": topic})
	if err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: id, Type: "subscribe", FunctionID: fn, Config: cfg}); err != nil {
		t.Fatal(err)
	}
}

// peer is a worker that hands each payload to h and answers at once, or,
// with release set, only once release is closed.
type peer struct {
	s       atomic.Pointer[engine.Session]
	h       func([]byte)
	release chan struct{}
}

func (p *peer) Invoke(_ context.Context, inv engine.Invocation) error {
	if p.h != nil {
		p.h(inv.Payload)
	}
	go func() {
		if p.release != nil {
			<-p.release
		}
		p.s.Load().Result(inv.InvocationID, []byte("null"), nil)
	}()
	return nil
}
func (*peer) Cancel(string) {}
func (*peer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

func wantCode(t *testing.T, err error, code engine.Code) {
	t.Helper()
	if e := engine.AsError(err); err == nil || e.Code != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
}

// TestFanOutAcrossAFleet: three engines; function A has a replica on each,
// function B one on engine 2. Every message published through any engine
// reaches A exactly once (its replicas compete) and B exactly once, with
// data as it was published.
func TestFanOutAcrossAFleet(t *testing.T) {
	ns := natstest.Start(t)
	nodes := []*node{startNode(t, ns, pubsubmodule.Config{}), startNode(t, ns, pubsubmodule.Config{}), startNode(t, ns, pubsubmodule.Config{})}
	var mu sync.Mutex
	gotA, gotB := map[string]int{}, map[string]int{}
	perReplica := make([]atomic.Int64, 3)
	for i, n := range nodes {
		s := n.serve(t, "test::a", func(p []byte) {
			perReplica[i].Add(1)
			mu.Lock()
			gotA[string(p)]++
			mu.Unlock()
		})
		subscribe(t, s, fmt.Sprintf("a%d", i), "test::a", "orders.created")
	}
	sb := nodes[1].serve(t, "test::b", func(p []byte) {
		mu.Lock()
		gotB[string(p)]++
		mu.Unlock()
	})
	subscribe(t, sb, "b", "test::b", "orders.created")
	other := nodes[2].serve(t, "test::other", func(p []byte) { t.Errorf("another topic's function got %s", p) })
	subscribe(t, other, "o", "test::other", "orders")

	const n = 300
	for i := range n {
		if err := nodes[i%3].publish(t, fmt.Sprintf(`{"topic":"orders.created","data":{"i":%d}}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(gotA) == n && len(gotB) == n
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for a duplicate to show
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		k := fmt.Sprintf(`{"i":%d}`, i)
		if gotA[k] != 1 || gotB[k] != 1 {
			t.Fatalf("message %s reached A %d times and B %d times, want once each", k, gotA[k], gotB[k])
		}
	}
	for i := range perReplica {
		if perReplica[i].Load() == 0 {
			t.Errorf("replica %d of A got no message: replicas do not share the work (%d %d %d)", i, perReplica[0].Load(), perReplica[1].Load(), perReplica[2].Load())
		}
	}
}

func TestDataAsIsAndBadInput(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, pubsubmodule.Config{MaxTopicBytes: 32})
	got := make(chan string, 10)
	s := n.serve(t, "test::f", func(p []byte) { got <- string(p) })
	long := strings.Repeat("t", 32)
	subscribe(t, s, "f", "test::f", long)
	subscribe(t, s, "g", "test::f", "ünïcode topic/with.dots*")
	for _, p := range []string{`{"topic":"` + long + `","data":[1,"x",{"y":null}]}`, `{"topic":"` + long + `","data":"s"}`, `{"topic":"` + long + `"}`, `{"topic":"ünïcode topic/with.dots*","data":7}`} {
		if err := n.publish(t, p); err != nil {
			t.Fatal(err)
		}
	}
	// Calls run concurrently: no order is promised.
	want := map[string]bool{`[1,"x",{"y":null}]`: true, `"s"`: true, `null`: true, `7`: true}
	for range len(want) {
		select {
		case g := <-got:
			if !want[g] {
				t.Fatalf("handler got %s, want one of %v", g, want)
			}
			delete(want, g)
		case <-time.After(5 * time.Second):
			t.Fatalf("no message, want %v", want)
		}
	}
	for _, bad := range []string{`{"data":1}`, `{"topic":""}`, `{"topic":"` + long + `x"}`, "{\"topic\":\"\xff\"}", `{"topic":1}`, `[`, ``} {
		wantCode(t, n.publish(t, bad), codes.InvalidArgument)
	}
	wantCode(t, n.publish(t, `{"topic":"big","data":"`+strings.Repeat("x", 2<<20)+`"}`), codes.MessageTooLarge)
	for _, bad := range []string{`{}`, `"x"`, `{"topic":""}`, ``, `{"topic":7}`} {
		err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: "bad", Type: "subscribe", FunctionID: "test::f", Config: json.RawMessage(bad)})
		wantCode(t, err, codes.InvalidArgument)
	}
	select {
	case g := <-got:
		t.Fatalf("a refused publish was delivered: %s", g)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestSlowSubscriberDoesNotSlowOthers: a function that never answers holds
// its own call slots only; another function of the same topic gets every
// message, and publish never waits.
func TestSlowSubscriberDoesNotSlowOthers(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, pubsubmodule.Config{Concurrency: 2, PendingMsgs: 64, CallTimeout: time.Minute})
	release := make(chan struct{})
	hp := &peer{release: release}
	stuck, err := n.e.Attach(engine.WorkerInfo{Name: "stuck"}, hp)
	if err != nil {
		t.Fatal(err)
	}
	hp.s.Store(stuck)
	defer stuck.Close()
	if err := stuck.RegisterFunction("test::stuck", ""); err != nil {
		t.Fatal(err)
	}
	subscribe(t, stuck, "stuck", "test::stuck", "t")
	var fast atomic.Int64
	s := n.serve(t, "test::fast", func([]byte) { fast.Add(1) })
	subscribe(t, s, "fast", "test::fast", "t")
	const msgs = 1000
	start := time.Now()
	for b := range msgs / 20 {
		for i := range 20 {
			if err := n.publish(t, fmt.Sprintf(`{"topic":"t","data":%d}`, b*20+i)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for fast.Load() < int64(b+1)*20 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := fast.Load(); got != int64(b+1)*20 {
			t.Fatalf("the fast subscriber got %d of %d beside a stuck one", got, (b+1)*20)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("1000 messages took %v beside a stuck subscriber", d)
	}
	// The stuck function's messages past its pending limit were dropped,
	// and counted.
	poll.CheckFor(t, 5*time.Second, poll.Holds("drops counted", func() bool { return n.m.Stats().Dropped >= msgs-100 }))
	close(release)
}
