package natsfanout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/wire"
)

func frame(seq uint64) []byte {
	return wire.Change(store.Change{Key: store.Key{Stream: "s:1", Group: "g 1", Item: "i"}, Kind: store.KindUpdate,
		Value: []byte(fmt.Sprint(seq)), Seq: seq, Time: time.Now()})
}

func TestHistory(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	h, err := natsfanout.OpenHistory(ctx, natstest.Connect(t, ns), natsfanout.HistoryConfig{PerGroup: 8})
	if err != nil {
		t.Fatal(err)
	}
	// Two engines publish, interleaved out of order.
	p1, p2 := natsfanout.NewPublisher(natstest.Connect(t, ns)), natsfanout.NewPublisher(natstest.Connect(t, ns))
	for _, seq := range []uint64{1, 3, 2, 5, 4, 6, 6} {
		p := p1
		if seq%2 == 0 {
			p = p2
		}
		if err := p.Publish(ctx, "s:1", "g 1", frame(seq)); err != nil {
			t.Fatal(err)
		}
	}
	natsfanout.NewPublisher(natstest.Connect(t, ns)).Publish(ctx, "s:1", "other", frame(7))
	var frames [][]byte
	var last uint64
	var ok bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if frames, last, ok, err = h.Since(ctx, "s:1", "g 1", 2); err == nil && ok && last == 6 {
			break
		}
	}
	if err != nil || !ok || last != 6 || len(frames) != 4 {
		t.Fatalf("Since(2) = %d frames, last %d, ok %v, %v", len(frames), last, ok, err)
	}
	for i, f := range frames {
		if seq, _, _ := wire.Header(f); seq != uint64(3+i) {
			t.Fatalf("frame %d has seq %d", i, seq)
		}
	}
	if _, last, ok, _ := h.Since(ctx, "s:1", "g 1", 6); !ok || last != 6 {
		t.Fatalf("Since(6): last %d ok %v", last, ok)
	}
	// Only 8 events per group are kept: older ones cannot be replayed.
	for seq := uint64(7); seq <= 20; seq++ {
		p1.Publish(ctx, "s:1", "g 1", frame(seq))
	}
	time.Sleep(200 * time.Millisecond)
	if _, _, ok, err := h.Since(ctx, "s:1", "g 1", 2); ok || err != nil {
		t.Fatalf("Since(2) after trimming: ok %v, %v", ok, err)
	}
	if f, last, ok, err := h.Since(ctx, "s:1", "g 1", 15); !ok || last != 20 || len(f) != 5 || err != nil {
		t.Fatalf("Since(15): %d frames, last %d, ok %v, %v", len(f), last, ok, err)
	}
}

// An event still on its way while later ones are already kept (two
// engines' events cross) is not lost: Since returns the events up to it
// with ok, and the subscriber waits for the rest, instead of a resync.
// Only history trimmed past seq is lost.
func TestHistoryGapInFlight(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	h, err := natsfanout.OpenHistory(ctx, natstest.Connect(t, ns), natsfanout.HistoryConfig{PerGroup: 100})
	if err != nil {
		t.Fatal(err)
	}
	p := natsfanout.NewPublisher(natstest.Connect(t, ns))
	for _, seq := range []uint64{1, 2, 3, 5, 6} { // 4 is on its way
		p.Publish(ctx, "s:1", "g 1", frame(seq))
	}
	var frames [][]byte
	var last uint64
	var ok bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if frames, last, ok, err = h.Since(ctx, "s:1", "g 1", 1); err == nil && ok && last == 3 {
			break
		}
	}
	if err != nil || !ok || last != 3 || len(frames) != 2 {
		t.Fatalf("Since(1) with 4 in flight = %d frames, last %d, ok %v, %v; want 2, 3, true", len(frames), last, ok, err)
	}
	if frames, last, ok, err := h.Since(ctx, "s:1", "g 1", 3); err != nil || !ok || last != 3 || len(frames) != 0 {
		t.Fatalf("Since(3) with 4 in flight = %d frames, last %d, ok %v, %v; want nothing yet, ok", len(frames), last, ok, err)
	}
	p.Publish(ctx, "s:1", "g 1", frame(4))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if frames, last, ok, err = h.Since(ctx, "s:1", "g 1", 3); err == nil && ok && last == 6 {
			break
		}
	}
	if !ok || last != 6 || len(frames) != 3 {
		t.Fatalf("Since(3) once 4 arrived = %d frames, last %d, ok %v", len(frames), last, ok)
	}
}

// Held lists every event held for a group, even once Since cannot replay
// from the start (trimmed), in order; Reset drops them.
func TestHistoryHeldAndReset(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	h, err := natsfanout.OpenHistory(ctx, natstest.Connect(t, ns), natsfanout.HistoryConfig{PerGroup: 4})
	if err != nil {
		t.Fatal(err)
	}
	p := natsfanout.NewPublisher(natstest.Connect(t, ns))
	for _, seq := range []uint64{2, 1, 3, 4, 5, 6} {
		if err := p.Publish(ctx, "s:1", "g 1", frame(seq)); err != nil {
			t.Fatal(err)
		}
	}
	var held [][]byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if held, err = h.Held(ctx, "s:1", "g 1"); err != nil || len(held) == 4 {
			break
		}
	}
	if err != nil || len(held) != 4 {
		t.Fatalf("Held: %d frames, %v", len(held), err)
	}
	for i, f := range held {
		if seq, _, _ := wire.Header(f); seq != uint64(3+i) {
			t.Fatalf("frame %d has seq %d", i, seq)
		}
	}
	if err := h.Reset(ctx, "s:1", "g 1"); err != nil {
		t.Fatal(err)
	}
	if held, err := h.Held(ctx, "s:1", "g 1"); err != nil || len(held) != 0 {
		t.Fatalf("Held after Reset: %d frames, %v", len(held), err)
	}
}
