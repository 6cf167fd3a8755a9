package queuemodule_test

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/trinehq/trine/queuemodule"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type node struct {
	e *engine.Engine
	m *queuemodule.Module
}

func startNode(t *testing.T, ns *server.Server, cfg queuemodule.Config) *node {
	t.Helper()
	e := moduletest.Start(t, ns.ClientURL())
	cfg.Conn = natstest.Connect(t, ns)
	if cfg.AckWait == 0 {
		cfg.AckWait = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := queuemodule.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	return &node{e: e, m: m}
}

func (n *node) call(fn string, in any) (string, error) {
	p, _ := json.Marshal(in)
	out, err := n.e.Trigger(context.Background(), engine.Call{FunctionID: fn, Payload: p})
	return string(out), err
}

func (n *node) enqueue(t *testing.T, queue, fn string, payload any) {
	t.Helper()
	p, _ := json.Marshal(payload)
	out, err := n.call(queuemodule.FnEnqueue, queuemodule.EnqueueInput{Queue: queue, FunctionID: fn, Payload: p})
	if err != nil {
		t.Fatalf("enqueue on %s: %v", queue, err)
	}
	var r struct {
		MessageReceiptID string `json:"messageReceiptId"`
	}
	if json.Unmarshal([]byte(out), &r) != nil || len(r.MessageReceiptID) != 36 {
		t.Fatalf("enqueue result %s: want {messageReceiptId}", out)
	}
}

func handle(t *testing.T, e *engine.Engine, fn string, h func(payload []byte) error) {
	t.Helper()
	if err := e.RegisterFunction(fn, "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		return nil, h(c.Payload)
	})); err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code engine.Code) {
	t.Helper()
	if e := engine.AsError(err); err == nil || e.Code != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
}

// TestStandardQueueAcrossEngines: jobs enqueued through either of two
// engines all run, on both engines, and none twice when nothing fails.
func TestStandardQueueAcrossEngines(t *testing.T) {
	ns := natstest.Start(t)
	cfg := queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"jobs": {}}}
	nodes := []*node{startNode(t, ns, cfg), startNode(t, ns, cfg)}
	var mu sync.Mutex
	runs := map[int]int{}
	var per [2]atomic.Int64
	for i, n := range nodes {
		handle(t, n.e, "test::job", func(p []byte) error {
			var v struct{ N int }
			json.Unmarshal(p, &v)
			mu.Lock()
			runs[v.N]++
			mu.Unlock()
			per[i].Add(1)
			time.Sleep(time.Millisecond)
			return nil
		})
	}
	const jobs = 400
	for i := range jobs {
		nodes[i%2].enqueue(t, "jobs", "test::job", map[string]int{"n": i})
	}
	poll.CheckFor(t, 20*time.Second, poll.Holds("every job ran", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(runs) == jobs
	}))
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i := range jobs {
		if runs[i] != 1 {
			t.Fatalf("job %d ran %d times", i, runs[i])
		}
	}
	if per[0].Load() == 0 || per[1].Load() == 0 {
		t.Fatalf("jobs per engine %d and %d: one engine did all the work", per[0].Load(), per[1].Load())
	}
}

// TestRetriesDeadLetterAndRedrive: a job that always fails runs exactly
// max_retries times with growing backoff, lands in the dead-letter queue,
// and redrive puts it back, where it succeeds.
func TestRetriesDeadLetterAndRedrive(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{
		"flaky": {MaxRetries: 3, BackoffMs: 50},
		"ok":    {},
	}})
	var failing atomic.Bool
	failing.Store(true)
	var mu sync.Mutex
	var times []time.Time
	var okRuns atomic.Int64
	handle(t, n.e, "test::flaky", func(p []byte) error {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if failing.Load() {
			return errors.New("not today")
		}
		okRuns.Add(1)
		return nil
	})
	n.enqueue(t, "flaky", "test::flaky", map[string]string{"id": "x"})
	poll.CheckFor(t, 10*time.Second, poll.Holds("three attempts", func() bool { mu.Lock(); defer mu.Unlock(); return len(times) >= 3 }))
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	if len(times) != 3 {
		t.Fatalf("%d attempts, want max_retries = 3", len(times))
	}
	if d1, d2 := times[1].Sub(times[0]), times[2].Sub(times[1]); d1 < 50*time.Millisecond || d2 < 100*time.Millisecond {
		t.Fatalf("backoffs %v and %v, want at least 50 ms and 100 ms", d1, d2)
	}
	mu.Unlock()
	poll.CheckFor(t, 10*time.Second, poll.Holds("the dead letter counted", func() bool { return n.m.Counts()["flaky"].DeadLettered == 1 }))
	if c := n.m.Counts(); c["flaky"] != (queuemodule.Counts{Retries: 2, DeadLettered: 1}) || c["ok"] != (queuemodule.Counts{}) {
		t.Fatalf("Counts() = %+v, want 2 retries and 1 dead letter in flaky", c)
	}
	out, err := n.call(queuemodule.FnRedrive, map[string]string{"queue": "ok"})
	if err != nil || out != `{"queue":"ok","redriven":0}` {
		t.Fatalf("redrive of an empty dead-letter queue: %s %v", out, err)
	}
	failing.Store(false)
	out, err = n.call(queuemodule.FnRedrive, map[string]string{"queue": "flaky"})
	if err != nil || out != `{"queue":"flaky","redriven":1}` {
		t.Fatalf("redrive: %s %v", out, err)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the redriven job ran", func() bool { return okRuns.Load() == 1 }))
	out, _ = n.call(queuemodule.FnRedrive, map[string]string{"queue": "flaky"})
	if out != `{"queue":"flaky","redriven":0}` {
		t.Fatalf("second redrive: %s", out)
	}
	for _, bad := range []string{`{}`, `{"queue":""}`, `[`} {
		_, err := n.e.Trigger(context.Background(), engine.Call{FunctionID: queuemodule.FnRedrive, Payload: []byte(bad)})
		wantCode(t, err, codes.InvalidArgument)
	}
}

// TestFIFOOrderWithRetries: in a fifo queue with two lanes, each group's
// jobs complete in enqueue order even when one fails twice first; no job
// of its group starts while it is being retried.
func TestFIFOOrderWithRetries(t *testing.T) {
	ns := natstest.Start(t)
	cfg := queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{
		"ledger": {Type: "fifo", MessageGroupField: "account", Concurrency: 2, BackoffMs: 20, MaxRetries: 5},
	}}
	nodes := []*node{startNode(t, ns, cfg), startNode(t, ns, cfg)}
	var mu sync.Mutex
	done := map[string][]int{}
	var failures atomic.Int64
	for _, n := range nodes {
		handle(t, n.e, "test::post", func(p []byte) error {
			var v struct {
				Account string
				N       int
			}
			json.Unmarshal(p, &v)
			if v.Account == "a" && v.N == 5 && failures.Add(1) <= 2 {
				return errors.New("transient")
			}
			mu.Lock()
			defer mu.Unlock()
			done[v.Account] = append(done[v.Account], v.N)
			return nil
		})
	}
	const per = 30
	accounts := []string{"a", "b", "c", "d"}
	for i := range per {
		for _, a := range accounts {
			nodes[i%2].enqueue(t, "ledger", "test::post", map[string]any{"account": a, "n": i})
		}
	}
	poll.CheckFor(t, 30*time.Second, poll.Holds("every job ran", func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, d := range done {
			total += len(d)
		}
		return total == per*len(accounts)
	}))
	mu.Lock()
	defer mu.Unlock()
	for _, a := range accounts {
		for i, v := range done[a] {
			if v != i {
				t.Fatalf("account %s completed %v: out of order", a, done[a])
			}
		}
	}
	if failures.Load() < 3 {
		t.Fatalf("job a/5 failed %d times, want 2 and then a success", failures.Load())
	}
}

func TestEnqueueRefusals(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{
		"fifo": {Type: "fifo", MessageGroupField: "g"},
		"std":  {},
	}})
	var ran atomic.Int64
	handle(t, n.e, "test::f", func([]byte) error { ran.Add(1); return nil })
	for _, c := range []struct {
		in   string
		code engine.Code
	}{
		{`{"queue":"nope","function_id":"test::f","payload":1}`, codes.EnqueueError},
		{`{"queue":"fifo","function_id":"test::f","payload":{"x":1}}`, codes.EnqueueError},
		{`{"queue":"fifo","function_id":"test::f","payload":{"g":null}}`, codes.EnqueueError},
		{`{"queue":"fifo","function_id":"test::f","payload":[1]}`, codes.EnqueueError},
		{`{"queue":"std","function_id":"","payload":1}`, codes.InvalidArgument},
		{`{"queue":"std","payload":1}`, codes.InvalidArgument},
		{`{"queue":"std","function_id":"test::f","payload":"` + strings.Repeat("x", 2<<20) + `"}`, codes.MessageTooLarge},
		{`[`, codes.InvalidArgument},
	} {
		_, err := n.e.Trigger(context.Background(), engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: []byte(c.in)})
		if e := engine.AsError(err); err == nil || e.Code != c.code {
			t.Errorf("%.80s: got %v, want %s", c.in, err, c.code)
		}
	}
	n.enqueue(t, "fifo", "test::f", map[string]any{"g": 0})
	poll.CheckFor(t, 5*time.Second, poll.Holds("the one good job ran", func() bool { return ran.Load() == 1 }))
	time.Sleep(100 * time.Millisecond)
	if ran.Load() != 1 {
		t.Fatalf("%d jobs ran: a refused enqueue was queued", ran.Load())
	}
}

func TestQueueConfigErrors(t *testing.T) {
	ns := natstest.Start(t)
	for _, q := range []map[string]queuemodule.QueueConfig{
		{"a b": {}},
		{"": {}},
		{"x": {Type: "priority"}},
		{"x": {Type: "fifo"}},
		{"x": {MessageGroupField: "g"}},
		{"x": {MaxRetries: -1}},
		{"x": {Concurrency: 1 << 20}},
		{"x": {Type: "fifo", MessageGroupField: "g", Concurrency: 65}},
	} {
		if _, err := queuemodule.New(queuemodule.Config{Conn: natstest.Connect(t, ns), Queues: q}); err == nil {
			t.Errorf("queues %+v accepted", q)
		}
	}
}

// TestWorkerGoneMidJob: the worker running a job disconnects; the job
// fails with worker_disconnected, goes back, and a replica that registers
// later runs it.
func TestWorkerGoneMidJob(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"jobs": {BackoffMs: 100}}})
	taken := make(chan struct{}, 1)
	first, err := n.e.Attach(engine.WorkerInfo{Name: "first"}, &silentPeer{taken: taken})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.RegisterFunction("test::job", ""); err != nil {
		t.Fatal(err)
	}
	n.enqueue(t, "jobs", "test::job", "payload")
	<-taken
	first.Close()
	var ran atomic.Int64
	handle(t, n.e, "test::job", func(p []byte) error {
		if string(p) != `"payload"` {
			t.Errorf("payload %s", p)
		}
		ran.Add(1)
		return nil
	})
	poll.CheckFor(t, 10*time.Second, poll.Holds("the job ran on the second worker", func() bool { return ran.Load() == 1 }))
}

// silentPeer takes invocations and never answers them.
type silentPeer struct{ taken chan struct{} }

func (p *silentPeer) Invoke(context.Context, engine.Invocation) error {
	select {
	case p.taken <- struct{}{}:
	default:
	}
	return nil
}
func (*silentPeer) Cancel(string) {}
func (*silentPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

// TestEngineGoneMidJob: the engine running a job loses its NATS
// connection without acking (as a killed process does); another engine
// runs the job once the ack wait passes.
func TestEngineGoneMidJob(t *testing.T) {
	ns := natstest.Start(t)
	cfg := queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"jobs": {}}, AckWait: time.Second}
	e1 := moduletest.Start(t, "")
	nc1 := natstest.Connect(t, ns)
	cfg1 := cfg
	cfg1.Conn = nc1
	m1, err := queuemodule.New(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	handle(t, e1, "test::job", func([]byte) error {
		close(started)
		<-release
		return nil
	})
	if err := m1.Register(e1); err != nil {
		t.Fatal(err)
	}
	p, _ := json.Marshal(queuemodule.EnqueueInput{Queue: "jobs", FunctionID: "test::job", Payload: json.RawMessage(`7`)})
	if _, err := e1.Trigger(context.Background(), engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: p}); err != nil {
		t.Fatal(err)
	}
	<-started
	nc1.Close() // the engine is gone: no ack, no renewal
	n2 := startNode(t, ns, cfg)
	got := make(chan string, 2)
	handle(t, n2.e, "test::job", func(p []byte) error { got <- string(p); return nil })
	select {
	case p := <-got:
		if p != "7" {
			t.Fatalf("payload %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not move to the other engine")
	}
	close(release)
	m1.Close()
}

// TestDurableTopics: two functions subscribe to a topic, each through
// triggers on two engines. Every message reaches each function once, its
// replicas share them, and a function that fails is retried without the
// other seeing the message again.
func TestDurableTopics(t *testing.T) {
	ns := natstest.Start(t)
	nodes := []*node{startNode(t, ns, queuemodule.Config{}), startNode(t, ns, queuemodule.Config{})}
	var mu sync.Mutex
	got := map[string]map[int]int{"test::a": {}, "test::b": {}}
	var bFailed atomic.Bool
	for i, n := range nodes {
		for _, fn := range []string{"test::a", "test::b"} {
			handle(t, n.e, fn, func(p []byte) error {
				var v struct{ N int }
				json.Unmarshal(p, &v)
				if fn == "test::b" && v.N == 3 && bFailed.CompareAndSwap(false, true) {
					return errors.New("once")
				}
				mu.Lock()
				got[fn][v.N]++
				mu.Unlock()
				return nil
			})
			s := moduletest.Session(t, n.e)
			cfg := `{"topic":"orders","queue_config":{"backoff_ms":20}}`
			if err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: fmt.Sprintf("%s-%d", fn, i), Type: queuemodule.TriggerDurable, FunctionID: fn, Config: json.RawMessage(cfg)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	const msgs = 100
	for i := range msgs {
		if _, err := nodes[i%2].call(queuemodule.FnDurablePublish, map[string]any{"topic": "orders", "data": map[string]int{"n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	poll.CheckFor(t, 20*time.Second, poll.Holds("every message reached both functions", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["test::a"]) == msgs && len(got["test::b"]) == msgs
	}))
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for fn, m := range got {
		for i := range msgs {
			if m[i] != 1 {
				t.Fatalf("%s got message %d %d times", fn, i, m[i])
			}
		}
	}
	for _, bad := range []string{`{}`, `{"topic":""}`, `{"topic":"t","queue_config":{"type":"fifo"}}`, `{"topic":"t","queue_config":{"max_retries":-2}}`, `"x"`} {
		s := moduletest.Session(t, nodes[0].e)
		err := s.RegisterTrigger(context.Background(), engine.Trigger{ID: "bad", Type: queuemodule.TriggerDurable, FunctionID: "test::a", Config: json.RawMessage(bad)})
		wantCode(t, err, codes.InvalidArgument)
	}
}
