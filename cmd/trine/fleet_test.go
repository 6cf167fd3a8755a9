package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestFleetRidesOutNATSNodeLoss: an engine and a gateway on different
// nodes of a three-node NATS cluster; the engine's node and then the
// gateway's node are stopped while writes go on. A browser-like client of
// the gateway still ends with every event once, in order.
func TestFleetRidesOutNATSNodeLoss(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", cl.URLs(0), "--store", "memory")...)
	stream, _ := startGateway(t, "--engine", e.grpc, "--nats-url", cl.URLs(1))
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	sub, err := trine.Subscribe(ctx, "ws://"+stream, "fleet", "g", trine.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	n := 0
	write := func(count int) {
		t.Helper()
		for range count {
			n++
			if _, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "fleet", "group_id": "g", "item_id": strconv.Itoa(n % 10), "data": n}); err != nil {
				t.Fatalf("write %d: %v", n, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	write(50)
	cl.Stop(0) // the engine's node
	write(100)
	cl.Restart(0)
	cl.Stop(1) // the gateway's node
	write(100)
	time.Sleep(500 * time.Millisecond)
	write(1) // a last event shows any gap before it

	var seqs []uint64
	var from uint64 // the first sequence not in the snapshot
	for ev := range sub.Events() {
		if ev.Type == "sync" {
			if ev.Resync || len(seqs) > 0 {
				t.Fatalf("a second snapshot (resync %v) after %v: history should have covered the gap", ev.Resync, compact(seqs))
			}
			from = ev.Seq + 1
			continue
		}
		seqs = append(seqs, ev.Seq)
		if ev.Seq == uint64(n) {
			break
		}
	}
	for i, s := range seqs {
		if s != from+uint64(i) {
			t.Fatalf("events %v after a snapshot at %d: want %d..%d once each, in order", compact(seqs), from-1, from, n)
		}
	}
	if got := from + uint64(len(seqs)) - 1; got != uint64(n) {
		t.Fatalf("events end at %d, want %d", got, n)
	}
	t.Logf("snapshot at %d, then %d events in order across two NATS node losses", from-1, len(seqs))
}

func compact(s []uint64) string {
	var b strings.Builder
	for i, v := range s {
		if i > 0 && v == s[i-1]+1 && i+1 < len(s) && s[i+1] == v+1 {
			continue
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strconv.FormatUint(v, 10))
	}
	return b.String()
}

// TestWorkerMovesToAnotherEngine: a worker given two engines moves to the
// second when the first dies, and its functions come back with no user
// code; calls through the surviving engine work before and after.
func TestWorkerMovesToAnotherEngine(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	a := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", cl.URLs(0), "--store", "jetstream")...)
	b := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", cl.URLs(1), "--store", "jetstream")...)
	w := trine.RegisterWorker(a.grpc+","+b.grpc, trine.WithName("mover"), trine.WithCloseTimeout(time.Second),
		trine.WithReconnectBackoff(20*time.Millisecond, 100*time.Millisecond))
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterFunction(ctx, "test::mover", func(context.Context, json.RawMessage) (any, error) { return "here", nil }); err != nil {
		t.Fatal(err)
	}
	caller := connectWorker(t, b.grpc)
	if out, err := caller.Trigger(ctx, "test::mover", nil); err != nil || string(out) != `"here"` {
		t.Fatalf("call through B while the worker is on A: %s %v", out, err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	deadline := time.Now().Add(15 * time.Second)
	for {
		// A call routed to A just before it died is only answered by its
		// deadline: keep each try short.
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		out, err := caller.Trigger(cctx, "test::mover", nil)
		ccancel()
		if err == nil && string(out) == `"here"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's function never came back on B: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFleetSharesState: two engines and two gateways on a three-node
// cluster with the JetStream store (three replicas). Increments through
// both engines at once sum exactly and engine B reads them; clients of both
// gateways get every one of those events exactly once, in order (events
// that cross on their way are replayed from the shared history); then
// writes through engine A reach them the same way.
func TestFleetSharesState(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	js := []string{"--store", "jetstream", "--store-replicas", "3"}
	a := startEngine(t, trineBin, testEnv(), engineArgs(t, append([]string{"--nats-url", cl.URLs(0)}, js...)...)...)
	b := startEngine(t, trineBin, testEnv(), engineArgs(t, append([]string{"--nats-url", cl.URLs(1)}, js...)...)...)
	g1, _ := startGateway(t, "--engine", a.grpc, "--nats-url", cl.URLs(1))
	g2, _ := startGateway(t, "--engine", b.grpc, "--nats-url", cl.URLs(2))
	wa, wb := connectWorker(t, a.grpc), connectWorker(t, b.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	var subs []*trine.Subscription
	for _, g := range []string{g1, g2} {
		sub, err := trine.Subscribe(ctx, "ws://"+g, "shared", "g")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		if ev := <-sub.Events(); ev.Type != "sync" || ev.Seq != 0 {
			t.Fatalf("snapshot %+v", ev)
		}
		subs = append(subs, sub)
	}
	const perEngine = 25
	errs := make(chan error, 2)
	for _, w := range []*trine.Worker{wa, wb} {
		go func() {
			for range perEngine {
				if _, err := w.Trigger(ctx, "stream::update", map[string]any{"stream_name": "shared", "group_id": "g", "item_id": "counter",
					"ops": []map[string]any{{"type": "increment", "path": "n", "by": 1}}}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	out, err := wb.Trigger(ctx, "stream::get", map[string]any{"stream_name": "shared", "group_id": "g", "item_id": "counter", "include_seq": true})
	if err != nil || string(out) != `{"id":"counter","data":{"n":50},"seq":50}` {
		t.Fatalf("engine B reads %s, %v; want n=50 at seq 50", out, err)
	}
	checkFleetState(ctx, t, wa, wb)
	const more = 20
	for i := range more {
		if _, err := wa.Trigger(ctx, "stream::set", map[string]any{"stream_name": "shared", "group_id": "g", "item_id": "x", "data": i}); err != nil {
			t.Fatal(err)
		}
	}
	for i, sub := range subs {
		for want := uint64(1); want <= 50+more; want++ {
			ev := <-sub.Events()
			if ev.Seq != want || ev.Type == "sync" {
				t.Fatalf("gateway %d: event %+v, want seq %d", i+1, ev, want)
			}
			if want <= 50 && string(ev.Data) != fmt.Sprintf(`{"n":%d}`, want) {
				t.Fatalf("gateway %d: increment %d carries %s", i+1, want, ev.Data)
			}
		}
	}
}

// checkFleetState: state written through both engines of a fleet loses no
// update, and a state trigger registered on engine A fires, once per
// change, for writes through engine B.
func checkFleetState(ctx context.Context, t *testing.T, wa, wb *trine.Worker) {
	t.Helper()
	events := make(chan json.RawMessage, 100)
	if err := wa.RegisterFunction(ctx, "fleet::on_state", func(_ context.Context, p json.RawMessage) (any, error) {
		events <- p
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := wa.RegisterTrigger(ctx, trine.Trigger{ID: "fleet-state", Type: "state", FunctionID: "fleet::on_state", Config: map[string]any{"scope": "fleet"}}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	const perEngine = 10
	for _, w := range []*trine.Worker{wa, wb} {
		go func() {
			for range perEngine {
				if _, err := w.Trigger(ctx, "state::update", map[string]any{"scope": "fleet", "key": "n",
					"ops": []map[string]any{{"type": "increment", "path": "", "by": 1}}}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	out, err := wa.Trigger(ctx, "state::get", map[string]any{"scope": "fleet", "key": "n", "include_seq": true})
	if err != nil || string(out) != `{"key":"n","value":20,"seq":20}` {
		t.Fatalf("engine A reads %s, %v; want 20 at seq 20", out, err)
	}
	seen := map[float64]bool{}
	for len(seen) < 2*perEngine {
		select {
		case p := <-events:
			var ev struct {
				Seq      float64 `json:"seq"`
				NewValue float64 `json:"new_value"`
			}
			json.Unmarshal(p, &ev)
			if seen[ev.Seq] || ev.NewValue != ev.Seq {
				t.Fatalf("state event %s: repeated or out of step", p)
			}
			seen[ev.Seq] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d state events reached engine A's trigger", len(seen), 2*perEngine)
		}
	}
}

// TestFleetRefusesSeparateStores: engines on one NATS serve the same
// streams, so an engine with a store of its own refuses to start beside
// another engine, and any engine refuses to start beside one with a store
// of its own; the refusal names --store jetstream, and the engine already
// running logs why the other left. Engines that all use JetStream start.
func TestFleetRefusesSeparateStores(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	url := ns.ClientURL()
	a := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", url, "--store", "memory")...)
	for _, store := range []string{"file", "memory", "jetstream"} {
		r := runTrine(t, testEnv(), "", engineArgs(t, "--nats-url", url, "--store", store)...)
		if r.code != 1 || !strings.Contains(r.stderr, "--store jetstream") || !strings.Contains(r.stderr, "grpc "+a.grpc+", --store memory") {
			t.Fatalf("an engine with --store %s beside one with --store memory: exit %d, stderr:\n%s", store, r.code, r.stderr)
		}
	}
	poll.CheckFor(t, startTimeout, poll.Holds("engine A to log the refused engines", func() bool {
		return strings.Count(a.stderr.String(), "an engine that cannot share this NATS tried to start") == 3
	}))

	js := natstest.Start(t).ClientURL()
	startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", js, "--store", "jetstream")...)
	startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", js, "--store", "jetstream")...)
	if r := runTrine(t, testEnv(), "", engineArgs(t, "--nats-url", js, "--store", "file")...); r.code != 1 || !strings.Contains(r.stderr, "--store jetstream") {
		t.Fatalf("an engine with --store file beside JetStream engines: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
