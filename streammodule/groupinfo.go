package streammodule

import (
	"context"
	"sync"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
)

// FnGroupInfo describes one group: its seq, how full its history is, and
// how often subscribers had to resync.
const FnGroupInfo = "stream::group_info"

// GroupInfo is the result of stream::group_info.
type GroupInfo struct {
	StreamName string `json:"stream_name"`
	GroupID    string `json:"group_id"`
	Seq        uint64 `json:"seq"`
	// History is how much of the group's history this engine holds for
	// resuming with since; nil with a shared history (JetStream).
	History *HistoryFill `json:"history"`
	// ResyncsPerMin is how many resync snapshots of the group this engine
	// served in the last minute (a gateway asks for one when the history
	// no longer reaches back to a subscriber's since; joins that resync
	// together share one).
	ResyncsPerMin int `json:"resyncs_per_min"`
}

// HistoryFill is a group's history: events and bytes held, and their
// bounds (--stream-history, --stream-history-bytes).
type HistoryFill struct {
	Events    int `json:"events"`
	MaxEvents int `json:"max_events"`
	Bytes     int `json:"bytes"`
	MaxBytes  int `json:"max_bytes"`
}

// groupInfo serves stream::group_info with the caller's right to read the
// group (stream::get), as stream::presence does.
func (m *Module) groupInfo(ctx context.Context, c engine.Call) ([]byte, error) {
	_, it, err := m.readItem(c, false)
	if err != nil {
		return nil, err
	}
	if err := c.Grant.CanCall(FnGet, nil); err != nil {
		return nil, err
	}
	stream, group := it.key.Stream, it.key.Group
	_, seq, err := m.store.Get(ctx, store.Key{Stream: stream, Group: group})
	if err != nil {
		return nil, storeError(FnGroupInfo, err)
	}
	out := GroupInfo{StreamName: stream, GroupID: group, Seq: seq,
		ResyncsPerMin: m.resyncs.lastMinute(stream, group, time.Now())}
	if m.cfg.History == nil {
		events, bytes := m.hist.fill(stream, group)
		out.History = &HistoryFill{Events: events, MaxEvents: m.hist.size, Bytes: bytes, MaxBytes: m.hist.groupBytes}
	}
	return engine.MarshalJSON(out)
}

// maxResyncGroups bounds the groups whose resyncs are counted at once;
// past it, resyncs of further groups go uncounted until older counts age
// out (a minute).
const maxResyncGroups = 1 << 16

// resyncCounts counts resync snapshots per group over the last minute,
// in two one-minute windows.
type resyncCounts struct {
	mu     sync.Mutex
	groups map[groupKey]*resyncWindow
}

type resyncWindow struct {
	minute    int64 // Unix minute of cur
	cur, prev int
}

func (r *resyncCounts) add(stream, group string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, min := groupKey{stream, group}, now.Unix()/60
	if r.groups == nil {
		r.groups = make(map[groupKey]*resyncWindow)
	}
	w := r.groups[k]
	if w == nil {
		if len(r.groups) >= maxResyncGroups {
			for k, w := range r.groups {
				if w.minute < min-1 {
					delete(r.groups, k)
				}
			}
			if len(r.groups) >= maxResyncGroups {
				return
			}
		}
		w = &resyncWindow{minute: min}
		r.groups[k] = w
	}
	w.roll(min)
	w.cur++
}

// roll moves w to minute min.
func (w *resyncWindow) roll(min int64) {
	switch {
	case min == w.minute:
	case min == w.minute+1:
		w.prev, w.cur = w.cur, 0
	default:
		w.prev, w.cur = 0, 0
	}
	w.minute = min
}

// lastMinute estimates the resyncs of the last 60 s: this minute's, and
// the previous minute's in proportion to the part of it still in range.
func (r *resyncCounts) lastMinute(stream, group string, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.groups[groupKey{stream, group}]
	if w == nil {
		return 0
	}
	w.roll(now.Unix() / 60)
	left := 1 - float64(now.Unix()%60)/60
	return w.cur + int(float64(w.prev)*left+0.5)
}
