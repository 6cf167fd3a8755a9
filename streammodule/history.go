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

// ring holds the frames of sequences first..last, contiguous, in a circular
// buffer that grows up to the history size.
type ring struct {
	frames [][]byte
	head   int // index of first
	first  uint64
	last   uint64
}

func (r *ring) len() int { return int(r.last - r.first + 1) }

func (r *ring) at(seq uint64) []byte {
	return r.frames[(r.head+int(seq-r.first))%len(r.frames)]
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
		r = &ring{frames: make([][]byte, 1, min(h.size, 16)), first: seq, last: seq}
		r.frames[0] = frame
		h.groups[k] = r
		return
	}
	n := r.len()
	switch {
	case n < len(r.frames):
		r.frames[(r.head+n)%len(r.frames)] = frame
	case len(r.frames) < h.size: // full but may grow: unroll and append
		grown := make([][]byte, n, min(h.size, 2*n))
		for i := range n {
			grown[i] = r.frames[(r.head+i)%n]
		}
		r.frames, r.head = append(grown, frame), 0
	default: // full: overwrite the oldest
		r.frames[r.head] = frame
		r.head = (r.head + 1) % len(r.frames)
		r.first++
	}
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
	for s := seq + 1; s <= r.last; s++ {
		frames = append(frames, r.at(s))
	}
	return frames, r.last, true, true
}
