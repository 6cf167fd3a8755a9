package streammodule

import (
	"fmt"
	"strconv"
	"testing"
)

func TestHistoryRing(t *testing.T) {
	for _, size := range []int{1, 2, 5, 16, 40} {
		h := newHistoryBytes(size, DefaultHistoryGroupBytes, DefaultHistoryTotalBytes)
		for seq := uint64(1); seq <= 100; seq++ {
			h.add("s", "g", seq, []byte(strconv.FormatUint(seq, 10)))
			first := uint64(1)
			if seq > uint64(size) {
				first = seq - uint64(size) + 1
			}
			for since := uint64(0); since <= seq+1; since++ {
				frames, last, known, ok := h.since("s", "g", since)
				wantOK := since+1 >= first && since <= seq
				if !known || ok != wantOK || (ok && last != seq) {
					t.Fatalf("size %d after %d: since(%d) = last %d known %v ok %v", size, seq, since, last, known, ok)
				}
				if !ok {
					continue
				}
				var want []string
				for s := since + 1; s <= seq; s++ {
					want = append(want, strconv.FormatUint(s, 10))
				}
				var got []string
				for _, f := range frames {
					got = append(got, string(f))
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("size %d after %d: since(%d) = %v, want %v", size, seq, since, got, want)
				}
			}
		}
	}
	h := newHistoryBytes(4, DefaultHistoryGroupBytes, DefaultHistoryTotalBytes)
	h.add("s", "g", 1, nil)
	h.add("s", "g", 7, []byte("7")) // a gap restarts the ring
	if _, _, _, ok := h.since("s", "g", 1); ok {
		t.Fatal("history claims to cover a gap")
	}
	if f, _, _, ok := h.since("s", "g", 6); !ok || len(f) != 1 {
		t.Fatal("history after a gap")
	}
	if _, _, known, _ := h.since("s", "other", 0); known {
		t.Fatal("unknown group is known")
	}
}

// History is bounded in bytes, per group and in total, whatever the count
// bound: updating one 1.9 MB item 500 times used to keep 950 MB.
func TestHistoryBytes(t *testing.T) {
	h := newHistoryBytes(1000, 10_000, 25_000)
	frame := make([]byte, 1000)
	for seq := uint64(1); seq <= 100; seq++ {
		h.add("s", "a", seq, frame)
	}
	if h.bytes > 10_000 {
		t.Fatalf("one group holds %d bytes, the bound is 10,000", h.bytes)
	}
	if frames, last, _, ok := h.since("s", "a", 90); !ok || last != 100 || len(frames) != 10 {
		t.Fatalf("since(90) = %d frames, last %d, ok %v", len(frames), last, ok)
	}
	if _, _, known, ok := h.since("s", "a", 80); !known || ok {
		t.Fatal("history older than the byte bound still served")
	}
	// Many groups: the total bound drops the oldest events first.
	for g := range 10 {
		for seq := uint64(1); seq <= 5; seq++ {
			h.add("s", fmt.Sprint("g", g), seq, frame)
		}
	}
	if h.bytes > 25_000 {
		t.Fatalf("history holds %d bytes, the total bound is 25,000", h.bytes)
	}
	if _, _, _, ok := h.since("s", "g9", 0); !ok {
		t.Fatal("the newest group lost its history")
	}
	if _, _, _, ok := h.since("s", "a", 99); ok {
		t.Fatal("the oldest history was kept over the newest")
	}
	// Stale bookkeeping does not grow without bound.
	for seq := uint64(6); seq <= 100_000; seq++ {
		h.add("s", "g9", seq, frame[:10])
	}
	if len(h.order)-h.orderHead > 4*h.events+64 {
		t.Fatalf("%d order entries for %d events", len(h.order)-h.orderHead, h.events)
	}
}

// A group's ring doubles as it fills: filling it to the history size
// allocates a few times, not once per event (it grew by one slot an
// event, copying every frame it held each time).
func TestHistoryRingDoubles(t *testing.T) {
	const size = 1000
	h := newHistoryBytes(size, DefaultHistoryGroupBytes, DefaultHistoryTotalBytes)
	frame := []byte("f")
	seq := uint64(0)
	grows := 0
	for range size {
		seq++
		before := 0
		if r := h.groups[groupKey{"s", "g"}]; r != nil {
			before = len(r.frames)
		}
		h.add("s", "g", seq, frame)
		if len(h.groups[groupKey{"s", "g"}].frames) != before {
			grows++
		}
	}
	if grows > 8 { // 16, 32, …, 512, 1000
		t.Errorf("the ring was made or grown %d times over %d events", grows, size)
	}
	if f, last, _, ok := h.since("s", "g", 0); !ok || len(f) != size || last != seq {
		t.Errorf("since(0): %d frames, last %d, ok %v", len(f), last, ok)
	}
}
