package queuemodule_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/queuemodule"
	"github.com/trinehq/trine/streammodule/contracts"
)

// TestListAndPeekDeadLetters: iii::queue::list counts a queue's dead
// letters, and iii::queue::dead_letters pages through them without taking
// them out (redrive still finds them all), shows a payload only to a
// caller that may call its function and only up to its bound, ends a page
// early past MaxListBytes, and refuses a limit out of bounds.
func TestListAndPeekDeadLetters(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{
		"flaky": {MaxRetries: 1, BackoffMs: 10},
		"quiet": {},
	}})
	var fixed atomic.Bool
	flaky := func([]byte) error {
		if fixed.Load() {
			return nil
		}
		return errors.New("not today")
	}
	handle(t, n.e, "test::flaky", flaky)
	n.enqueue(t, "flaky", "test::flaky", map[string]int{"n": 1})
	n.enqueue(t, "flaky", "test::flaky", map[string]int{"n": 2})
	n.enqueue(t, "flaky", "test::flaky", map[string]string{"big": strings.Repeat("x", queuemodule.DeadLettersDataBytes)})

	var list struct{ Queues []queuemodule.QueueStatus }
	poll.CheckFor(t, 10*time.Second, poll.Holds("three dead letters listed", func() bool {
		out, err := n.call(queuemodule.FnList, map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		must(t, json.Unmarshal([]byte(out), &list))
		return len(list.Queues) == 2 && list.Queues[0].DeadLetters == 3 && list.Queues[0].InFlight == 0
	}))
	if q := list.Queues[0]; q.Queue != "flaky" || q.Type != "standard" || q.Depth != 0 {
		t.Fatalf("flaky = %+v, want no job waiting", q)
	}
	if q := list.Queues[1]; q.Queue != "quiet" || q.DeadLetters != 0 {
		t.Fatalf("quiet = %+v", q)
	}
	if fig, err := n.m.Figures(t.Context()); err != nil || len(fig) != 2 || fig[0] != list.Queues[0] {
		t.Fatalf("Figures() = %+v, %v; iii::queue::list says %+v", fig, err, list.Queues)
	}

	type page struct {
		Messages []queuemodule.DeadLetter
		More     bool
	}
	peek := func(in map[string]any) page {
		t.Helper()
		out, err := n.call(queuemodule.FnDeadLetters, in)
		if err != nil {
			t.Fatal(err)
		}
		var p page
		must(t, json.Unmarshal([]byte(out), &p))
		return p
	}
	p1 := peek(map[string]any{"queue": "flaky", "limit": 2})
	if len(p1.Messages) != 2 || !p1.More {
		t.Fatalf("first page: %+v, want 2 and more", p1)
	}
	p2 := peek(map[string]any{"queue": "flaky", "limit": 2, "after": p1.Messages[1].Seq})
	if len(p2.Messages) != 1 || p2.More {
		t.Fatalf("second page: %+v, want 1 and no more", p2)
	}
	// They died in any order; the big one shows its size only.
	small := 0
	for _, m := range append(p1.Messages, p2.Messages...) {
		switch {
		case m.FunctionID != "test::flaky" || m.Attempts != 1 || !strings.Contains(m.Error, "not today"):
			t.Fatalf("dead letter %+v", m)
		case m.Truncated:
			if m.Data != nil || m.DataBytes <= queuemodule.DeadLettersDataBytes {
				t.Fatalf("big dead letter: %+v, want its size only", m)
			}
		case string(m.Data) == `{"n":1}` || string(m.Data) == `{"n":2}`:
			small++
		default:
			t.Fatalf("dead letter %+v", m)
		}
	}
	if small != 2 {
		t.Fatalf("%d small dead letters shown, want 2", small)
	}

	// A page ends early past --max-list-bytes, with more.
	narrow := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"flaky": {MaxRetries: 1, BackoffMs: 10}, "quiet": {}},
		MaxListBytes: 16})
	handle(t, narrow.e, "test::flaky", flaky)
	out, err := narrow.call(queuemodule.FnDeadLetters, map[string]any{"queue": "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	var bounded page
	must(t, json.Unmarshal([]byte(out), &bounded))
	if len(bounded.Messages) != 1 || !bounded.More {
		t.Fatalf("a page of at most 16 bytes: %s, want one dead letter and more", out)
	}

	// A caller that may not call test::flaky sees no payload.
	g, err := n.e.Authenticate(context.Background(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "iii::queue::*"}}}, engine.AuthInput{})
	must(t, err)
	out2, err := n.e.Trigger(context.Background(), engine.Call{FunctionID: queuemodule.FnDeadLetters, Payload: []byte(`{"queue":"flaky"}`), Grant: g})
	must(t, err)
	var hidden page
	must(t, json.Unmarshal(out2, &hidden))
	if len(hidden.Messages) != 3 || !hidden.Messages[0].Hidden || hidden.Messages[0].Data != nil {
		t.Fatalf("dead letters seen without the right to call their function: %s", out2)
	}
	for _, m := range hidden.Messages {
		if m.Error != "" || m.FunctionID != "" || m.DataBytes != 0 || m.Attempts != 0 {
			t.Fatalf("a hidden dead letter tells more than calling would: %+v", m)
		}
	}
	// Under a policy, iii::queue::list shows only the queues the policy
	// allows (queue::<name>).
	listed := func(g *engine.Grant) (names []string) {
		t.Helper()
		out, err := n.e.Trigger(context.Background(), engine.Call{FunctionID: queuemodule.FnList, Payload: []byte(`{}`), Grant: g})
		must(t, err)
		var l struct{ Queues []queuemodule.QueueStatus }
		must(t, json.Unmarshal(out, &l))
		for _, q := range l.Queues {
			names = append(names, q.Queue)
		}
		return names
	}
	if got := listed(g); len(got) != 0 {
		t.Fatalf("queues listed to a caller whose policy allows none: %v", got)
	}
	g2, err := n.e.Authenticate(context.Background(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "iii::queue::*"}, {Match: queuemodule.QueueEntry("quiet")}}}, engine.AuthInput{})
	must(t, err)
	if got := listed(g2); len(got) != 1 || got[0] != "quiet" {
		t.Fatalf("queues listed to a caller allowed quiet: %v", got)
	}
	// Nor may that caller redrive them: a redrive runs them again.
	_, err = n.e.Trigger(context.Background(), engine.Call{FunctionID: queuemodule.FnRedrive, Payload: []byte(`{"queue":"flaky"}`), Grant: g})
	wantCode(t, err, codes.Forbidden)

	// after at its largest is past the end, not the first page again.
	if p := peek(map[string]any{"queue": "flaky", "after": uint64(math.MaxUint64)}); len(p.Messages) != 0 || p.More {
		t.Fatalf("after max uint64: %+v, want nothing", p)
	}

	for _, bad := range []string{`{}`, `{"queue":"flaky","limit":0}`, `{"queue":"flaky","limit":101}`} {
		_, err := n.e.Trigger(context.Background(), engine.Call{FunctionID: queuemodule.FnDeadLetters, Payload: []byte(bad)})
		wantCode(t, err, codes.InvalidArgument)
	}
	// Peeking took nothing out.
	fixed.Store(true)
	if out, err := n.call(queuemodule.FnRedrive, map[string]string{"queue": "flaky"}); err != nil || out != `{"queue":"flaky","redriven":3}` {
		t.Fatalf("redrive after peeking: %s %v", out, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestQueuedJobKeepsNoRightsOfAPolicy: a job enqueued by a connection
// under a listener policy runs later, maybe on another engine, where that
// connection's rights are unknown. What the job's function has the engine
// call on the enqueuer's behalf (stream::define's migrate, through
// contracts.CallAs) must then be refused, not run as trusted; a job a
// trusted caller enqueued keeps its rights.
func TestQueuedJobKeepsNoRightsOfAPolicy(t *testing.T) {
	ns := natstest.Start(t)
	n := startNode(t, ns, queuemodule.Config{Queues: map[string]queuemodule.QueueConfig{"jobs": {MaxRetries: 1}}})
	var secret atomic.Int64
	handle(t, n.e, "test::secret", func([]byte) error { secret.Add(1); return nil })
	onBehalf := contracts.CallAs(n.e)
	results := make(chan error, 2)
	must(t, n.e.RegisterFunction("test::define", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
		_, err := onBehalf(ctx, c, "test::secret", []byte(`{}`))
		results <- err
		return nil, nil
	})))
	g, err := n.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "iii::queue::*"}, {Match: "test::define"}}}, engine.AuthInput{})
	must(t, err)
	// Called directly, the policy refuses test::secret.
	_, err = n.e.Trigger(t.Context(), engine.Call{FunctionID: "test::define", Payload: []byte(`{}`), Grant: g})
	must(t, err)
	wantCode(t, <-results, codes.Forbidden)

	in, _ := json.Marshal(queuemodule.EnqueueInput{Queue: "jobs", FunctionID: "test::define", Payload: json.RawMessage(`{}`)})
	_, err = n.e.Trigger(t.Context(), engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: in, Grant: g})
	must(t, err)
	select {
	case err := <-results:
		wantCode(t, err, codes.Forbidden)
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not run")
	}
	if secret.Load() != 0 {
		t.Fatal("a job enqueued under a policy called a function the policy refuses")
	}

	n.enqueue(t, "jobs", "test::define", map[string]any{})
	select {
	case err := <-results:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the trusted job did not run")
	}
	if secret.Load() != 1 {
		t.Fatal("a trusted caller's job lost its rights")
	}
}
