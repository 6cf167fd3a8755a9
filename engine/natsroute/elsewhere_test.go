package natsroute_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/natsroute"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/internal/natstest"
)

// TestPolicyNeverJoinsAReplicaSetAcrossTheFleet: a connection under a
// policy on engine B may not register an id that a trusted worker serves
// on engine A (it would join A's NATS queue group and take a share of
// every call); an id served nowhere is accepted at once, a trusted worker
// on B still joins, and asking never runs the function.
func TestPolicyNeverJoinsAReplicaSetAcrossTheFleet(t *testing.T) {
	ns := natstest.Start(t)
	a, b := startEngine(t, ns), startEngine(t, ns)
	var ran atomic.Int32
	wa := worker(t, a.Addr, "trusted-a")
	if err := wa.RegisterFunction(t.Context(), "admin::secret", func(context.Context, json.RawMessage) (any, error) {
		ran.Add(1)
		return "a", nil
	}); err != nil {
		t.Fatal(err)
	}
	// A serves admin::secret to the fleet once B can reach it.
	wb := worker(t, b.Addr, "caller-b")
	if out, err := wb.Trigger(t.Context(), "admin::secret", nil); err != nil || string(out) != `"a"` {
		t.Fatalf("admin::secret through B = %s, %v", out, err)
	}
	ran.Store(0)

	s := moduletest.Granted(t, b.Engine, `{}`)
	err := s.RegisterFunction("admin::secret", "")
	if err == nil || engine.AsError(err).Code != codes.Conflict {
		t.Fatalf("a policy session on B registering admin::secret (served on A) = %v, want conflict", err)
	}
	if b.Engine.HasFunction("admin::secret") {
		t.Fatal("the refused registration left admin::secret on B")
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("asking whether A serves admin::secret ran it %d times", n)
	}

	start := time.Now()
	if err := s.RegisterFunction("untrusted::own", ""); err != nil {
		t.Fatalf("an id served nowhere: %v", err)
	}
	t.Logf("a registration served nowhere took %v", time.Since(start))

	// A trusted worker on B may still join A's replica set.
	wt := worker(t, b.Addr, "trusted-b")
	if err := wt.RegisterFunction(t.Context(), "admin::secret", func(context.Context, json.RawMessage) (any, error) { return "b", nil }); err != nil {
		t.Fatalf("a trusted worker on B joining admin::secret: %v", err)
	}
}

// TestProbeNeverRuns: a probe request that reaches an engine is answered
// there without running the function or forwarding it, whatever its
// payload.
func TestProbeNeverRuns(t *testing.T) {
	ns := natstest.Start(t)
	a := startEngine(t, ns)
	var ran atomic.Int32
	wa := worker(t, a.Addr, "trusted-a")
	if err := wa.RegisterFunction(t.Context(), "test::count", func(context.Context, json.RawMessage) (any, error) {
		ran.Add(1)
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	r := natsroute.New(natstest.Connect(t, ns), nil)
	ctx := t.Context()
	deadline := time.Now().Add(5 * time.Second)
	for {
		served, err := r.ServedElsewhere(ctx, "test::count")
		if err != nil {
			t.Fatal(err)
		}
		if served {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("engine A never answered that it serves test::count")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if served, err := r.ServedElsewhere(ctx, "test::nobody"); served || err != nil {
		t.Fatalf("ServedElsewhere(test::nobody) = %v, %v, want false", served, err)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("probes ran test::count %d times", n)
	}
}

// TestTrustedTakesBackAcrossTheFleet: a connection under a policy on B
// registered an id first, when no engine served it; a trusted worker on A
// registering it later takes it back on every engine: B's policy replica
// goes, and B's callers reach A's worker.
func TestTrustedTakesBackAcrossTheFleet(t *testing.T) {
	ns := natstest.Start(t)
	a, b := startEngine(t, ns), startEngine(t, ns)
	s := moduletest.Granted(t, b.Engine, `{}`)
	if err := s.RegisterFunction("admin::later", ""); err != nil {
		t.Fatal(err)
	}
	wa := worker(t, a.Addr, "trusted-a")
	if err := wa.RegisterFunction(t.Context(), "admin::later", func(context.Context, json.RawMessage) (any, error) { return "a", nil }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Engine.HasFunction("admin::later") {
		if time.Now().After(deadline) {
			t.Fatal("B kept the policy replica of an id a trusted worker registered on A")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wb := worker(t, b.Addr, "caller-b")
	for range 6 {
		if out, err := wb.Trigger(t.Context(), "admin::later", nil); err != nil || string(out) != `"a"` {
			t.Fatalf("admin::later through B = %s, %v", out, err)
		}
	}
}
