package streammodule

import "sync"

// history keeps the last events of every group that had one since the
// engine started, so that a subscriber can resume from a sequence. It is
// bounded in events per group (size), in bytes per group and in bytes in
// all; past a bound the oldest events go, and a subscriber that needed them
// resyncs.
type history struct {
	size, groupBytes, totalBytes int

	mu     sync.Mutex
	groups map[groupKey]*ring
	bytes  int // every ring's frames
	events int // every ring's len
	// order lists the events in the order they were added, oldest first
	// from orderHead, so that the total bound drops the oldest of all
	// groups. Entries whose event is already gone are skipped and, when
	// they outnumber the live ones, compacted away.
	order     []orderEntry
	orderHead int
}

type orderEntry struct {
	k   groupKey
	r   *ring
	seq uint64
}

type groupKey struct{ stream, group string }

// ring holds the frames of sequences first..last, contiguous, in a circular
// buffer (all of frames; slots past last are nil) that doubles up to the
// history size.
type ring struct {
	frames [][]byte
	head   int // index of first
	first  uint64
	last   uint64
	bytes  int
}

func (r *ring) len() int { return int(r.last - r.first + 1) }

func (r *ring) at(seq uint64) []byte {
	return r.frames[(r.head+int(seq-r.first))%len(r.frames)]
}

func newHistoryBytes(size, groupBytes, totalBytes int) *history {
	return &history{size: size, groupBytes: groupBytes, totalBytes: totalBytes, groups: make(map[groupKey]*ring)}
}

// held is the events and bytes the history holds.
func (h *history) held() (events, bytes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.events, h.bytes
}

// add records the frame of seq; calls for one group come in sequence order.
func (h *history) add(stream, group string, seq uint64, frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := groupKey{stream, group}
	r := h.groups[k]
	if r == nil || seq != r.last+1 {
		if r != nil {
			h.bytes -= r.bytes
			h.events -= r.len()
		}
		r = &ring{frames: make([][]byte, min(h.size, 16)), first: seq, last: seq}
		r.frames[0] = frame
		h.groups[k] = r
	} else {
		n := r.len()
		switch {
		case n < len(r.frames):
			r.frames[(r.head+n)%len(r.frames)] = frame
		case len(r.frames) < h.size: // full but may grow: unroll into twice the room
			grown := make([][]byte, min(h.size, 2*n))
			k := copy(grown, r.frames[r.head:])
			copy(grown[k:], r.frames[:r.head])
			grown[n] = frame
			r.frames, r.head = grown, 0
		default: // full: overwrite the oldest
			h.drop(r)
			r.frames[(r.head+r.len())%len(r.frames)] = frame
		}
		r.last = seq
	}
	r.bytes += len(frame)
	h.bytes += len(frame)
	h.events++
	h.order = append(h.order, orderEntry{k, r, seq})
	for r.bytes > h.groupBytes && r.len() > 1 {
		h.drop(r)
	}
	for h.bytes > h.totalBytes && h.orderHead < len(h.order) {
		e := h.order[h.orderHead]
		h.order[h.orderHead] = orderEntry{}
		h.orderHead++
		if h.live(e) && e.seq == e.r.first {
			if e.r.len() == 1 {
				h.bytes -= e.r.bytes
				h.events--
				delete(h.groups, e.k)
			} else {
				h.drop(e.r)
			}
		}
	}
	h.compact()
}

// drop removes r's oldest event.
func (h *history) drop(r *ring) {
	b := len(r.frames[r.head])
	r.frames[r.head] = nil
	r.head = (r.head + 1) % len(r.frames)
	r.first++
	r.bytes -= b
	h.bytes -= b
	h.events--
}

// live reports whether e's event is still held.
func (h *history) live(e orderEntry) bool {
	return h.groups[e.k] == e.r && e.seq >= e.r.first && e.seq <= e.r.last
}

// compact drops the order entries of events that are gone once they
// outnumber the live ones.
func (h *history) compact() {
	if len(h.order)-h.orderHead <= 2*h.events+64 {
		return
	}
	kept := h.order[:0]
	for _, e := range h.order[h.orderHead:] {
		if h.live(e) {
			kept = append(kept, e)
		}
	}
	clear(h.order[len(kept):])
	h.order, h.orderHead = kept, 0
}

// fill returns the events and bytes held for a group.
func (h *history) fill(stream, group string) (events, bytes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.groups[groupKey{stream, group}]; r != nil {
		return r.len(), r.bytes
	}
	return 0, 0
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

// of returns the frames held for each of stream's groups, oldest first.
func (h *history) of(stream string) map[string][][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][][]byte{}
	for k, r := range h.groups {
		if k.stream != stream {
			continue
		}
		frames := make([][]byte, 0, r.len())
		for s := r.first; s <= r.last; s++ {
			frames = append(frames, r.at(s))
		}
		out[k.group] = frames
	}
	return out
}

// reset drops a group's history: a subscriber resuming from it resyncs.
func (h *history) reset(stream, group string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := groupKey{stream, group}
	if r := h.groups[k]; r != nil {
		h.bytes -= r.bytes
		h.events -= r.len()
		delete(h.groups, k)
	}
}
