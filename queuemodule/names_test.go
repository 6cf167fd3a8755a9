package queuemodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/queuemodule"
)

// restricted is a grant that may call everything but admin::secret.
func restricted(t *testing.T, e *engine.Engine) *engine.Grant {
	t.Helper()
	if err := e.RegisterFunction("test::auth", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return []byte(`{"forbidden_functions":["admin::secret"]}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	g, err := e.Authenticate(t.Context(), &engine.Access{AuthFunctionID: "test::auth", ExposeFunctions: []engine.Filter{{Match: "*"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestEnqueueNamesAreByteExact: a function id or queue name that a
// transport could alter (white space at an end, CR/LF, NUL) is refused
// with invalid_argument on every path in, so "admin::secret " never
// reaches the forbidden admin::secret and a job for "job::q " never runs
// job::q.
func TestEnqueueNamesAreByteExact(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"jobs": {BackoffMs: 10}}})
	var secret, q, ok atomic.Int64
	handle(t, n.e, "admin::secret", func([]byte) error { secret.Add(1); return nil })
	handle(t, n.e, "job::q", func([]byte) error { q.Add(1); return nil })
	handle(t, n.e, "test::ok", func([]byte) error { ok.Add(1); return nil })
	g := restricted(t, n.e)
	sess, err := n.e.AttachGranted(engine.WorkerInfo{Name: "untrusted"}, &silentPeer{}, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)

	_, err = sess.Enqueue(t.Context(), "jobs", engine.Call{FunctionID: "admin::secret"})
	wantCode(t, err, codes.Forbidden)
	for _, fn := range []string{"admin::secret ", " admin::secret", "admin::secret\n", "admin::secret\r\n", "admin::secret\x00", "job::q ", "job::q\t"} {
		_, err := sess.Enqueue(t.Context(), "jobs", engine.Call{FunctionID: fn, Payload: []byte(`1`)})
		wantCode(t, err, codes.InvalidArgument)
		p, _ := json.Marshal(queuemodule.EnqueueInput{Queue: "jobs", FunctionID: fn, Payload: json.RawMessage(`1`)})
		_, err = n.e.Trigger(t.Context(), engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: p, Grant: g})
		wantCode(t, err, codes.InvalidArgument)
		_, err = n.e.Trigger(t.Context(), engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: p})
		wantCode(t, err, codes.InvalidArgument)
	}
	for _, queue := range []string{"jobs ", "jobs\n", "\x00"} {
		p, _ := json.Marshal(queuemodule.EnqueueInput{Queue: queue, FunctionID: "test::ok", Payload: json.RawMessage(`1`)})
		_, err = n.e.Trigger(t.Context(), engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: p})
		wantCode(t, err, codes.InvalidArgument)
	}
	n.enqueue(t, "jobs", "test::ok", 1)
	poll.CheckFor(t, 5*time.Second, poll.Holds("the good job ran", func() bool { return ok.Load() == 1 }))
	if secret.Load() != 0 || q.Load() != 0 {
		t.Fatalf("admin::secret ran %d times and job::q %d times: a refused name was enqueued", secret.Load(), q.Load())
	}
}

// TestDurableTopicNamesAreByteExact: a topic with white space at an end or
// a control character is refused, on publish and on subscribe; one with
// inner spaces and non-ASCII letters is delivered, as is.
func TestDurableTopicNamesAreByteExact(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{})
	got := make(chan string, 10)
	handle(t, n.e, "test::a", func(p []byte) error { got <- string(p); return nil })
	s := moduletest.Session(t, n.e)
	for i, topic := range []string{"orders", "ünï orders/x"} {
		cfg, _ := json.Marshal(map[string]string{"topic": topic})
		if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: fmt.Sprint("t", i), Type: queuemodule.TriggerDurable, FunctionID: "test::a", Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []string{"orders ", " orders", "orders\n", "news\nx", "orders\r", "orders\x00", "orders\t"} {
		_, err := n.call(queuemodule.FnDurablePublish, map[string]any{"topic": topic, "data": "dropped"})
		wantCode(t, err, codes.InvalidArgument)
		cfg, _ := json.Marshal(map[string]string{"topic": topic})
		err = s.RegisterTrigger(t.Context(), engine.Trigger{ID: "bad", Type: queuemodule.TriggerDurable, FunctionID: "test::a", Config: cfg})
		wantCode(t, err, codes.InvalidArgument)
		_, err = n.call(queuemodule.FnRedrive, map[string]string{"queue": topic})
		wantCode(t, err, codes.InvalidArgument)
	}
	for _, topic := range []string{"orders", "ünï orders/x"} {
		if _, err := n.call(queuemodule.FnDurablePublish, map[string]any{"topic": topic, "data": topic}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{`"orders"`: true, `"ünï orders/x"`: true}
	for range len(want) {
		select {
		case g := <-got:
			if !want[g] {
				t.Fatalf("subscriber got %s, want one of %v", g, want)
			}
			delete(want, g)
		case <-time.After(5 * time.Second):
			t.Fatalf("not delivered: %v", want)
		}
	}
}

// TestAcknowledgedTopicMessageIsNeverDropped: a message on a topic's
// subject whose topic header is missing, does not decode, or names a
// topic of another subject (written by another program, or altered on
// the way) is dead-lettered for each subscriber, never acknowledged and
// forgotten; redrive brings it back.
func TestAcknowledgedTopicMessageIsNeverDropped(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{})
	var runs atomic.Int64
	handle(t, n.e, "test::a", func([]byte) error { runs.Add(1); return nil })
	s := moduletest.Session(t, n.e)
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "t", Type: queuemodule.TriggerDurable, FunctionID: "test::a", Config: json.RawMessage(`{"topic":"orders"}`)}); err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, ns)
	for _, v := range []string{"orders x", "", "orders%ZZ", "orders%20x"} {
		msg := &nats.Msg{Subject: "trine.topic.orders", Header: nats.Header{}, Data: []byte(`1`)}
		if v != "" {
			msg.Header.Set("Trine-Topic", v)
		}
		if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	dlq := queuemodule.DeadLetterName("orders", "test::a")
	redriven := 0
	poll.CheckFor(t, 10*time.Second, poll.Holds("four dead letters redriven", func() bool {
		out, err := n.call(queuemodule.FnRedrive, map[string]string{"queue": dlq})
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Redriven int }
		json.Unmarshal([]byte(out), &r)
		redriven += r.Redriven
		return redriven == 4
	}))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the redriven messages ran", func() bool { return runs.Load() == 4 }))
}

// TestFIFOGroupKeyIsDecodedValue: {"g":"a<b"} and {"g":"a\u003cb"} are one
// group: their jobs run one at a time, in enqueue order, whatever lane
// their raw text would hash to.
func TestFIFOGroupKeyIsDecodedValue(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{
		"ledger": {Type: "fifo", MessageGroupField: "g", Concurrency: 64},
	}})
	var mu sync.Mutex
	var order []int
	var running, overlap atomic.Int64
	handle(t, n.e, "test::post", func(p []byte) error {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		var v struct{ N int }
		json.Unmarshal(p, &v)
		time.Sleep(20 * time.Millisecond) // the job's work
		mu.Lock()
		order = append(order, v.N)
		mu.Unlock()
		return nil
	})
	groups := []string{`"a<b"`, `"a\u003cb"`, `"\u0061<b"`, ` "a<b" `}
	const jobs = 16
	for i := range jobs {
		in := fmt.Sprintf(`{"queue":"ledger","function_id":"test::post","payload":{"g":%s,"n":%d}}`, groups[i%len(groups)], i)
		if _, err := n.e.Trigger(t.Context(), engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: []byte(in)}); err != nil {
			t.Fatal(err)
		}
	}
	poll.CheckFor(t, 20*time.Second, poll.Holds("every job ran", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == jobs }))
	mu.Lock()
	defer mu.Unlock()
	for i, v := range order {
		if v != i {
			t.Fatalf("jobs of one group completed %v: out of order", order)
		}
	}
	if overlap.Load() != 0 {
		t.Fatalf("%d jobs of one group ran beside another", overlap.Load())
	}
}

// countingPeer takes invocations, never answers them, and counts them.
type countingPeer struct{ n atomic.Int64 }

func (p *countingPeer) Invoke(context.Context, engine.Invocation) error { p.n.Add(1); return nil }
func (*countingPeer) Cancel(string)                                     {}
func (*countingPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

// TestDurableSubscriberBoundedInFlight: a subscriber that never answers,
// fed 24 messages of 500 KB, holds at most InFlightBytes of them in the
// engine; another function of the same topic gets every message; and a
// queue_config asking for more concurrency than MaxConcurrency is refused.
func TestDurableSubscriberBoundedInFlight(t *testing.T) {
	ns := natstest.Start(t)
	const limit = 2 << 20
	n := startNode(t, ns, queuemodule.Config{MaxConcurrency: 64, InFlightBytes: limit, CallTimeout: time.Minute})
	stuck := &countingPeer{}
	ss, err := n.e.Attach(engine.WorkerInfo{Name: "stuck"}, stuck)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ss.Close)
	if err := ss.RegisterFunction("test::stuck", ""); err != nil {
		t.Fatal(err)
	}
	err = ss.RegisterTrigger(t.Context(), engine.Trigger{ID: "greedy", Type: queuemodule.TriggerDurable, FunctionID: "test::stuck", Config: json.RawMessage(`{"topic":"big","queue_config":{"concurrency":1000}}`)})
	wantCode(t, err, codes.InvalidArgument)
	if err := ss.RegisterTrigger(t.Context(), engine.Trigger{ID: "stuck", Type: queuemodule.TriggerDurable, FunctionID: "test::stuck", Config: json.RawMessage(`{"topic":"big","queue_config":{"concurrency":64}}`)}); err != nil {
		t.Fatal(err)
	}
	var fast atomic.Int64
	handle(t, n.e, "test::fast", func([]byte) error { fast.Add(1); return nil })
	s := moduletest.Session(t, n.e)
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "fast", Type: queuemodule.TriggerDurable, FunctionID: "test::fast", Config: json.RawMessage(`{"topic":"big"}`)}); err != nil {
		t.Fatal(err)
	}
	const size, msgs = 500 << 10, 24
	in := []byte(`{"topic":"big","data":"` + strings.Repeat("x", size) + `"}`)
	for range msgs {
		if _, err := n.e.Trigger(t.Context(), engine.Call{FunctionID: queuemodule.FnDurablePublish, Payload: in}); err != nil {
			t.Fatal(err)
		}
	}
	poll.CheckFor(t, 20*time.Second, poll.Holds("the other function got every message", func() bool { return fast.Load() == msgs }))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the stuck function got its first messages", func() bool { return stuck.n.Load() > 0 }))
	t.Logf("the stuck function holds %d messages, %d bytes in flight (limit %d)", stuck.n.Load(), n.m.InFlightBytes("test::stuck"), limit)
	if got := stuck.n.Load(); got*size > limit {
		t.Fatalf("the stuck function holds %d messages of %d bytes: %d bytes in flight, past the limit of %d", got, size, got*size, limit)
	}
	if got := n.m.InFlightBytes("test::stuck"); got > limit || got < size {
		t.Fatalf("InFlightBytes = %d, want %d to %d", got, size, limit)
	}
}

// TestDurableConsumersOfLookAlikeNamesStaySeparate: topic "orders_eu" for
// x::y and topic "orders" for eu_x::y would share one JetStream consumer
// name (T_orders_eu_x~3A~3Ay); each must still get its own topic's
// messages, and only those.
func TestDurableConsumersOfLookAlikeNamesStaySeparate(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{})
	got := map[string]chan string{"x::y": make(chan string, 4), "eu_x::y": make(chan string, 4)}
	s := moduletest.Session(t, n.e)
	for fn, topic := range map[string]string{"x::y": "orders_eu", "eu_x::y": "orders"} {
		handle(t, n.e, fn, func(p []byte) error { got[fn] <- string(p); return nil })
		cfg, _ := json.Marshal(map[string]string{"topic": topic})
		if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: fn, Type: queuemodule.TriggerDurable, FunctionID: fn, Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []string{"orders_eu", "orders"} {
		if _, err := n.call(queuemodule.FnDurablePublish, map[string]any{"topic": topic, "data": topic}); err != nil {
			t.Fatal(err)
		}
	}
	for fn, want := range map[string]string{"x::y": `"orders_eu"`, "eu_x::y": `"orders"`} {
		select {
		case g := <-got[fn]:
			if g != want {
				t.Fatalf("%s got %s, want %s", fn, g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s got nothing, want %s", fn, want)
		}
	}
}

// TestQueueDoesNotRemoveAnothersConsumers: starting queue "a" removes the
// consumers of its own earlier configurations only, not those of queue
// "a_b", whose names share its prefix.
func TestQueueDoesNotRemoveAnothersConsumers(t *testing.T) {
	ns := natstest.Start(t)
	n1 := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"a_b": {}}})
	var ran atomic.Int64
	handle(t, n1.e, "test::job", func([]byte) error { ran.Add(1); return nil })
	startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"a": {}}})
	n1.enqueue(t, "a_b", "test::job", 1)
	poll.CheckFor(t, 5*time.Second, poll.Holds("the job of queue a_b ran", func() bool { return ran.Load() == 1 }))
}

// TestDurableSubscribersBoundedInFlightInTotal: six functions whose
// handlers never answer, each with its own durable subscription, hold at
// most InFlightBytesTotal of durable-topic messages between them however
// many they are (each alone may hold InFlightBytes); and a seventh
// function, fed once they have taken all they can, still gets every
// message: a stalled function takes more than its fair share of the
// total only from what no other function is owed.
func TestDurableSubscribersBoundedInFlightInTotal(t *testing.T) {
	ns := natstest.Start(t)
	const perFn, total = 2 << 20, 8 << 20
	n := startNode(t, ns, queuemodule.Config{MaxConcurrency: 64, InFlightBytes: perFn, InFlightBytesTotal: total, CallTimeout: time.Minute})
	stuck := &countingPeer{}
	ss, err := n.e.Attach(engine.WorkerInfo{Name: "stuck"}, stuck)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ss.Close)
	var stuckFns []string
	for i := range 6 {
		fn := fmt.Sprintf("test::stuck%d", i)
		stuckFns = append(stuckFns, fn)
		if err := ss.RegisterFunction(fn, ""); err != nil {
			t.Fatal(err)
		}
		if err := ss.RegisterTrigger(t.Context(), engine.Trigger{ID: fn, Type: queuemodule.TriggerDurable, FunctionID: fn, Config: json.RawMessage(`{"topic":"big","queue_config":{"concurrency":64}}`)}); err != nil {
			t.Fatal(err)
		}
	}
	var fast atomic.Int64
	handle(t, n.e, "test::fast", func([]byte) error { fast.Add(1); return nil })
	s := moduletest.Session(t, n.e)
	if err := s.RegisterTrigger(t.Context(), engine.Trigger{ID: "fast", Type: queuemodule.TriggerDurable, FunctionID: "test::fast", Config: json.RawMessage(`{"topic":"other"}`)}); err != nil {
		t.Fatal(err)
	}
	var most int64
	held := func() (sum int64) {
		for _, fn := range append(stuckFns, "test::fast") {
			sum += n.m.InFlightBytes(fn)
		}
		most = max(most, sum)
		return sum
	}
	const size, msgs = 500 << 10, 24
	publish := func(topic string) {
		in := []byte(`{"topic":"` + topic + `","data":"` + strings.Repeat("x", size) + `"}`)
		for range msgs {
			if _, err := n.e.Trigger(t.Context(), engine.Call{FunctionID: queuemodule.FnDurablePublish, Payload: in}); err != nil {
				t.Fatal(err)
			}
			held()
		}
	}
	publish("big")
	for _, fn := range stuckFns {
		poll.CheckFor(t, 10*time.Second, poll.Holds(fn+" got its first message", func() bool {
			held()
			return n.m.InFlightBytes(fn) >= size
		}))
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the stalled functions took all they may", func() bool {
		before := stuck.n.Load()
		h := held()
		return h >= total/2 && stuck.n.Load() == before
	}))
	publish("other")
	poll.CheckFor(t, 30*time.Second, poll.Holds("the answering function got every message", func() bool {
		held()
		return fast.Load() == msgs
	}))
	t.Logf("six stalled functions hold %d messages; at most %d bytes were in flight (total limit %d, %d per function)", stuck.n.Load(), most, total, perFn)
	if most > total {
		t.Fatalf("%d bytes in flight across functions, past the total limit of %d", most, total)
	}
	if got := stuck.n.Load(); got*size > total {
		t.Fatalf("the stalled functions hold %d messages of %d bytes, past the total limit of %d", got, size, total)
	}
}
