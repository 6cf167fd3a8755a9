package streammodule

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/streamapi"
	"github.com/trinehq/trine/streammodule/wire"
)

// Snapshot returns the sync frame of a group (item "") or of one item, and
// the group sequence it reflects: events with a sequence at or below it
// are contained in the snapshot. A custom stream is read through its
// worker; its snapshot carries no item ids. With q.PageBytes set, a
// built-in group comes as a page of items instead, for the caller to
// frame (wire.SyncStart, SyncEnd): each page reflects the sequence it
// gives, and the events after the first page's sequence bring a client
// that applies them to the group's state.
func (m *Module) Snapshot(ctx context.Context, q streamapi.SnapshotRequest) (streamapi.SnapshotResult, error) {
	now := time.Now()
	stream, group, item := q.StreamName, q.GroupID, q.ItemID
	if q.Resync && q.After == "" {
		m.resyncs.add(stream, group, now)
	}
	var contract uint64
	if c, err := m.cfg.Contracts.For(ctx, streamapi.FnSnapshot, stream); err != nil {
		return streamapi.SnapshotResult{}, err
	} else if c != nil {
		contract = c.Version
	}
	op := "list"
	if item != "" {
		op = "get"
	}
	if op, err := m.custom(stream, op); err != nil {
		return streamapi.SnapshotResult{}, err
	} else if op != "" {
		_, seq, err := m.store.Get(ctx, store.Key{Stream: stream, Group: group})
		if err != nil {
			return streamapi.SnapshotResult{}, storeError("stream::"+op, err)
		}
		in, _ := json.Marshal(map[string]string{"stream_name": stream, "group_id": group, "item_id": item})
		out, err := m.callCustom(ctx, op, stream, in)
		if err != nil {
			return streamapi.SnapshotResult{}, err
		}
		if !json.Valid(out) {
			out = nil
		}
		return streamapi.SnapshotResult{Frame: wire.Sync(seq, stream, group, item, now, out, nil, q.Resync, contract), Seq: seq, Contract: contract}, nil
	}
	if item != "" {
		it, seq, err := m.store.Get(ctx, store.Key{Stream: stream, Group: group, Item: item})
		if err != nil {
			return streamapi.SnapshotResult{}, storeError("stream::get", err)
		}
		return streamapi.SnapshotResult{Frame: wire.Sync(seq, stream, group, item, now, it.Value, nil, q.Resync, contract), Seq: seq, Contract: contract}, nil
	}
	if q.PageBytes > 0 {
		res, err := m.snapshotPage(ctx, stream, group, q.After, q.PageBytes)
		res.Contract = contract
		return res, err
	}
	// A whole group in one frame: bounded like stream::list.
	var res streamapi.SnapshotResult
	tooLarge := func() error {
		return m.cfg.Lists.TooLarge(streamapi.FnSnapshot, fmt.Sprintf("group %q of stream %q", group, stream),
			`set "page_bytes" and read the pages, "after" the last item of each, while "more" is true`)
	}
	_, err := m.cfg.Lists.Build(ctx, streamapi.FnSnapshot, tooLarge, func(maxBytes int) ([]byte, error) {
		p, err := m.store.List(ctx, stream, group, store.Range{MaxBytes: maxBytes, ItemBytes: 8})
		if err != nil {
			return nil, storeError("stream::list", err)
		}
		if p.More {
			return nil, tooLarge()
		}
		b := wire.SyncStart(p.Seq, stream, group, now)
		ids := make([]string, len(p.Items))
		for i, it := range p.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, it.Value...)
			ids[i] = it.ID
		}
		res = streamapi.SnapshotResult{Frame: wire.SyncEnd(b, ids, q.Resync, contract), Seq: p.Seq, Contract: contract}
		return nil, nil
	})
	return res, err
}

// pageItemOverhead is what an item adds to an encoded page besides its id
// and value: {"id":"","data":},
const pageItemOverhead = 20

// snapshotPage reads the group's items after after: as many as fit in max
// bytes (ids and values), and at least one. The store stops reading there,
// so a read never holds much more than a page.
func (m *Module) snapshotPage(ctx context.Context, stream, group, after string, max int) (streamapi.SnapshotResult, error) {
	p, err := m.store.List(ctx, stream, group, store.Range{After: after, MaxBytes: max, ItemBytes: pageItemOverhead})
	if err != nil {
		return streamapi.SnapshotResult{}, storeError("stream::list", err)
	}
	res := streamapi.SnapshotResult{Items: make([]streamapi.PageItem, len(p.Items)), Seq: p.Seq, More: p.More}
	for i, it := range p.Items {
		res.Items[i] = streamapi.PageItem{ID: it.ID, Data: it.Value}
	}
	return res, nil
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
