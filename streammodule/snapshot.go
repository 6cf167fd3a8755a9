package streammodule

import (
	"context"
	"encoding/json"
	"time"

	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/wire"
)

// Snapshot returns the encoded sync frame of a group (item "") or of one
// item, and the group sequence it reflects. Events with a sequence at or
// below it are contained in the snapshot. A custom stream is read through
// its worker; its snapshot carries no item ids.
func (m *Module) Snapshot(ctx context.Context, stream, group, item string, resync bool) ([]byte, uint64, error) {
	now := time.Now()
	op := "list"
	if item != "" {
		op = "get"
	}
	if op, err := m.custom(stream, op); err != nil {
		return nil, 0, err
	} else if op != "" {
		_, seq, err := m.store.Get(ctx, store.Key{Stream: stream, Group: group})
		if err != nil {
			return nil, 0, storeError("stream::"+op, err)
		}
		in, _ := json.Marshal(map[string]string{"stream_name": stream, "group_id": group, "item_id": item})
		out, err := m.callCustom(ctx, op, stream, in)
		if err != nil {
			return nil, 0, err
		}
		if !json.Valid(out) {
			out = nil
		}
		return wire.Sync(seq, stream, group, item, now, out, nil, resync), seq, nil
	}
	if item != "" {
		it, seq, err := m.store.Get(ctx, store.Key{Stream: stream, Group: group, Item: item})
		if err != nil {
			return nil, 0, storeError("stream::get", err)
		}
		return wire.Sync(seq, stream, group, item, now, it.Value, nil, resync), seq, nil
	}
	p, err := m.store.List(ctx, stream, group, "", 0)
	if err != nil {
		return nil, 0, storeError("stream::list", err)
	}
	data := []byte{'['}
	ids := make([]string, len(p.Items))
	for i, it := range p.Items {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, it.Value...)
		ids[i] = it.ID
	}
	data = append(data, ']')
	return wire.Sync(p.Seq, stream, group, "", now, data, ids, resync), p.Seq, nil
}

// Since returns the group's event frames after seq, oldest first, and the
// sequence of the last one (seq itself when nothing was missed). ok is
// false when the history no longer reaches back that far, or seq is ahead
// of the group: the subscriber then needs a fresh snapshot.
func (m *Module) Since(ctx context.Context, stream, group string, seq uint64) (frames [][]byte, last uint64, ok bool, err error) {
	if h := m.cfg.History; h != nil {
		return m.sinceShared(ctx, h, stream, group, seq)
	}
	frames, last, known, ok := m.hist.since(stream, group, seq)
	if known {
		if !ok {
			return nil, 0, false, nil
		}
		return frames, last, true, nil
	}
	// No event since start: only a subscriber that is already current
	// can resume.
	_, cur, err := m.store.Get(ctx, store.Key{Stream: stream, Group: group})
	if err != nil {
		return nil, 0, false, storeError("stream::get", err)
	}
	// An event may have arrived after the history check.
	if frames, last, known, ok := m.hist.since(stream, group, seq); known {
		return frames, last, ok, nil
	}
	return nil, seq, cur == seq, nil
}

// sinceShared serves Since from a shared history. Frames still on their
// way to it are not missing: the subscriber gets them live.
func (m *Module) sinceShared(ctx context.Context, h History, stream, group string, seq uint64) ([][]byte, uint64, bool, error) {
	_, cur, err := m.store.Get(ctx, store.Key{Stream: stream, Group: group})
	if err != nil {
		return nil, 0, false, storeError("stream::get", err)
	}
	if seq > cur {
		return nil, 0, false, nil // ahead of the group: the store was reset
	}
	if seq == cur {
		return nil, seq, true, nil
	}
	// What the history holds may end before cur: the newest events are
	// still on their way to it, and to the subscriber, which waits for
	// them (gateways catch up again if they do not come).
	frames, last, ok, err := h.Since(ctx, stream, group, seq)
	if err != nil || !ok {
		return nil, 0, false, err
	}
	return frames, last, true, nil
}
