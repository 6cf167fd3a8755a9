package streammodule

import "sync"

// history keeps the last events of every group that had one since the
// engine started, so that a subscriber can resume from a sequence.
type history struct {
	size int

	mu     sync.Mutex
	groups map[groupKey]*ring
}

type groupKey struct{ stream, group string }

// ring holds the frames of sequences first..last, contiguous.
type ring struct {
	frames [][]byte
	first  uint64
	last   uint64
}

func newHistory(size int) *history {
	return &history{size: size, groups: make(map[groupKey]*ring)}
}

// add records the frame of seq; calls for one group come in sequence order.
func (h *history) add(stream, group string, seq uint64, frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := groupKey{stream, group}
	r := h.groups[k]
	if r == nil || seq != r.last+1 {
		r = &ring{frames: make([][]byte, 0, min(h.size, 16)), first: seq}
		h.groups[k] = r
	}
	if len(r.frames) == h.size {
		copy(r.frames, r.frames[1:])
		r.frames = r.frames[:h.size-1]
		r.first++
	}
	r.frames = append(r.frames, frame)
	r.last = seq
}

// since returns the frames after seq, oldest first, and the last sequence
// the history holds. known is false when the group has no history here.
// ok is false when the history no longer reaches back to seq+1.
func (h *history) since(stream, group string, seq uint64) (frames [][]byte, last uint64, known, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.groups[groupKey{stream, group}]
	if r == nil {
		return nil, 0, false, false
	}
	if seq+1 < r.first || seq > r.last {
		return nil, r.last, true, false
	}
	return append([][]byte(nil), r.frames[seq+1-r.first:]...), r.last, true, true
}
