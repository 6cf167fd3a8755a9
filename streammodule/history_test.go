package streammodule

import (
	"fmt"
	"strconv"
	"testing"
)

func TestHistoryRing(t *testing.T) {
	for _, size := range []int{1, 2, 5, 16, 40} {
		h := newHistory(size)
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
	h := newHistory(4)
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
