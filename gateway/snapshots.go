package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/wire"
)

// snapshots shares snapshot reads among the subscriptions that need the
// same one, so that a reconnect storm (a thousand clients rejoining one
// group at once) costs the backend one read, not a thousand.
//
// A read may be shared only by subscriptions already receiving the group's
// events when it starts: a subscription buffers events from the moment
// hub.add returns, and drops those at or below the snapshot's sequence, so
// any event committed after the read is in its buffer, and any committed
// before is in the snapshot. A subscription that joined a read already
// under way could miss an event committed between that read and its own
// subscribe. So each key has at most one read under way, and a
// subscription arriving meanwhile waits for the next one, which starts
// when the current one ends and is shared by every subscription that
// arrived during it. Under a storm the backend sees one read per key at a
// time, each shared by all the joins that came while the previous one ran.
type snapshots struct {
	g    *Gateway
	mu   sync.Mutex
	keys map[snapshotKey]*snapshotSlot
	wg   sync.WaitGroup // reads under way
}

// snapshotKey is what a read returns the same thing for: a group's or one
// item's snapshot, or a later page of a group's.
type snapshotKey struct {
	stream, group, item, after string
	resync                     bool
	pageBytes                  int
}

func keyOf(q streammodule.SnapshotRequest) snapshotKey {
	return snapshotKey{q.StreamName, q.GroupID, q.ItemID, q.After, q.Resync, q.PageBytes}
}

// snapshotSlot is a key's read under way and the one due after it.
type snapshotSlot struct {
	reading, next *snapshotRead
}

// snapshotRead is one shared read. Its result is set before done closes.
type snapshotRead struct {
	q       streammodule.SnapshotRequest
	ctx     context.Context // ends once every waiter has given up
	cancel  context.CancelFunc
	waiters int // under snapshots.mu
	done    chan struct{}

	res   streammodule.SnapshotResult
	frame []byte // the whole sync frame, when res is not a page of several
	err   error
}

func newSnapshots(g *Gateway) *snapshots {
	return &snapshots{g: g, keys: make(map[snapshotKey]*snapshotSlot)}
}

// read returns q's snapshot from a read that started after the call, and
// its sync frame when it is whole (a custom stream's, an item's, or a
// group's that fits in one page). Callers must already receive the
// group's events.
func (sn *snapshots) read(ctx context.Context, q streammodule.SnapshotRequest) (streammodule.SnapshotResult, []byte, error) {
	k := keyOf(q)
	sn.mu.Lock()
	slot := sn.keys[k]
	if slot == nil {
		slot = &snapshotSlot{}
		sn.keys[k] = slot
	}
	var r *snapshotRead
	switch {
	case slot.reading == nil:
		r = newSnapshotRead(q)
		slot.reading = r
		sn.start(k, r)
	case slot.next == nil:
		r = newSnapshotRead(q)
		slot.next = r
	default:
		r = slot.next
	}
	r.waiters++
	sn.mu.Unlock()
	select {
	case <-r.done:
		return r.res, r.frame, r.err
	case <-ctx.Done():
	}
	sn.mu.Lock()
	if r.waiters--; r.waiters == 0 {
		r.cancel() // no one is left to read for
		if slot.next == r {
			slot.next = nil
		}
	}
	sn.mu.Unlock()
	return streammodule.SnapshotResult{}, nil, ctx.Err()
}

func newSnapshotRead(q streammodule.SnapshotRequest) *snapshotRead {
	r := &snapshotRead{q: q, done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// start runs r; when it ends, the read waiting behind it starts. Callers
// hold sn.mu.
func (sn *snapshots) start(k snapshotKey, r *snapshotRead) {
	sn.wg.Add(1)
	go func() {
		defer sn.wg.Done()
		r.res, r.frame, r.err = sn.fetch(r)
		r.cancel()
		sn.mu.Lock()
		defer sn.mu.Unlock()
		close(r.done)
		slot := sn.keys[k]
		slot.reading, slot.next = slot.next, nil
		if slot.reading == nil {
			delete(sn.keys, k)
			return
		}
		sn.start(k, slot.reading)
	}()
}

// fetch reads r's snapshot while holding one of the gateway's catch-up
// tokens (MaxCatchUpsTotal bounds the reads under way, shared or not),
// and builds the whole sync frame once for all its waiters.
func (sn *snapshots) fetch(r *snapshotRead) (streammodule.SnapshotResult, []byte, error) {
	select {
	case sn.g.catchUps <- struct{}{}:
	case <-r.ctx.Done():
		return streammodule.SnapshotResult{}, nil, r.ctx.Err()
	}
	defer func() { <-sn.g.catchUps }()
	q := r.q
	res, err := sn.g.cfg.Backend.Snapshot(r.ctx, q)
	switch {
	case err != nil:
		return res, nil, err
	case res.Frame != nil:
		return res, res.Frame, nil
	case !res.More && q.After == "":
		return res, syncFrame(q, res, nil, wire.SyncStart(res.Seq, q.StreamName, q.GroupID, time.Now())), nil
	}
	return res, nil, nil
}

// waiting is how many subscriptions wait for the read due after the one
// under way of q's key.
func (sn *snapshots) waiting(q streammodule.SnapshotRequest) int {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if slot := sn.keys[keyOf(q)]; slot != nil && slot.next != nil {
		return slot.next.waiters
	}
	return 0
}
