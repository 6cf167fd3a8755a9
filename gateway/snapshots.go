package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/streammodule/streamapi"
	"github.com/trinehq/trine/streammodule/wire"
)

// snapshots shares snapshot reads among the subscriptions that need the
// same one, so that a reconnect storm (a thousand clients rejoining one
// group at once) costs the backend a few reads, not a thousand. Later
// pages of a paged snapshot are shared too, with no spacing.
//
// A read may be shared only by subscriptions already receiving the group's
// events when it starts: a subscription buffers events from the moment
// hub.add returns, and drops those at or below the snapshot's sequence, so
// any event committed after the read is in its buffer, and any committed
// before is in the snapshot. A subscription that joined a read already
// under way could miss an event committed between that read and its own
// subscribe. So a key has at most one read under way, and at most one
// read of it starts per Config.SnapshotCoalesce: a subscription that finds
// no read of its key started within that time reads at once; one that
// finds a read under way, or one that started less than that ago, waits
// for the next read, which starts when that time has passed and the
// previous read has ended, and is shared by every subscription that
// arrived until then. A storm spread over some time (clients reconnecting
// over a few hundred milliseconds) costs about one read per
// SnapshotCoalesce of it, and the backend never serves more than one
// snapshot read of a key at a time.
type snapshots struct {
	g       *Gateway
	mu      sync.Mutex
	keys    map[snapshotKey]*snapshotSlot
	history map[historyKey]*historyRead // history reads under way
	wg      sync.WaitGroup              // reads under way

	reads, historyReads atomic.Int64 // backend reads, for Stats
}

// snapshotKey is what a read returns the same thing for: a group's or one
// item's snapshot, or a later page of a group's.
type snapshotKey struct {
	stream, group, item, after string
	resync                     bool
	pageBytes                  int
}

func keyOf(q streamapi.SnapshotRequest) snapshotKey {
	return snapshotKey{q.StreamName, q.GroupID, q.ItemID, q.After, q.Resync, q.PageBytes}
}

// snapshotSlot is a key's read under way (until SnapshotCoalesce after it
// started, at least, for the first page) and the one due after it, which
// takes waiters until it starts.
type snapshotSlot struct {
	reading, next *snapshotRead
}

// snapshotRead is one shared read. Its result is set before done closes.
type snapshotRead struct {
	q        streamapi.SnapshotRequest
	released chan struct{}   // closed when the key's turn passes to the next read
	ctx      context.Context // ends once every waiter has given up
	cancel   context.CancelFunc
	waiters  int // under snapshots.mu
	done     chan struct{}

	res   streamapi.SnapshotResult
	frame []byte // the whole sync frame, when res is not a page of several
	err   error
}

func newSnapshots(g *Gateway) *snapshots {
	return &snapshots{g: g, keys: make(map[snapshotKey]*snapshotSlot), history: make(map[historyKey]*historyRead)}
}

// read returns q's snapshot from a read that started after the call, and
// its sync frame when it is whole (a custom stream's, an item's, or a
// group's that fits in one page). Callers must already receive the
// group's events.
func (sn *snapshots) read(ctx context.Context, q streamapi.SnapshotRequest) (streamapi.SnapshotResult, []byte, error) {
	k := keyOf(q)
	sn.mu.Lock()
	slot := sn.keys[k]
	if slot == nil {
		slot = &snapshotSlot{}
		sn.keys[k] = slot
	}
	r := slot.next
	if r == nil && slot.reading != nil && sn.spacing(q) > 0 && slot.reading.shareable() {
		// Within SnapshotCoalesce of the read under way (or just done):
		// share it. It may have started before the caller subscribed;
		// the caller then takes the events between from history
		// (subscription.floor).
		r = slot.reading
	}
	if r == nil {
		r = newSnapshotRead(q)
		if slot.reading == nil { // no read of k lately: read at once
			slot.reading = r
			sn.start(k, slot, r, nil)
		} else {
			slot.next = r
			sn.start(k, slot, r, slot.reading.released)
		}
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
			if slot.reading == nil {
				delete(sn.keys, k)
			}
		}
	}
	sn.mu.Unlock()
	return streamapi.SnapshotResult{}, nil, ctx.Err()
}

// shareable reports whether r has its result or is still reading for
// someone. Callers hold snapshots.mu.
func (r *snapshotRead) shareable() bool {
	select {
	case <-r.done:
		return r.err == nil
	default:
		return r.ctx.Err() == nil
	}
}

func newSnapshotRead(q streamapi.SnapshotRequest) *snapshotRead {
	r := &snapshotRead{q: q, done: make(chan struct{}), released: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// start runs r once after (the previous read's turn; nil for none) has
// passed. Until then r is slot.next and takes waiters. r keeps the key's
// turn until SnapshotCoalesce after it started. Callers hold sn.mu.
func (sn *snapshots) start(k snapshotKey, slot *snapshotSlot, r *snapshotRead, after <-chan struct{}) {
	sn.wg.Add(1)
	go func() {
		defer sn.wg.Done()
		if after != nil {
			select {
			case <-after:
			case <-r.ctx.Done():
				return // every waiter left, and took r out of slot
			}
			sn.mu.Lock()
			if r.ctx.Err() != nil {
				sn.mu.Unlock()
				return
			}
			slot.reading, slot.next = r, nil
			sn.mu.Unlock()
		}
		started := time.Now()
		r.res, r.frame, r.err = sn.fetch(r)
		r.cancel()
		close(r.done)
		if d := sn.spacing(r.q) - time.Since(started); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-sn.g.stop:
			}
			t.Stop()
		}
		sn.mu.Lock()
		defer sn.mu.Unlock()
		slot.reading = nil
		if slot.next == nil {
			delete(sn.keys, k)
		}
		close(r.released)
	}()
}

// spacing is how long a read of q keeps its key's turn after it started:
// SnapshotCoalesce for the first read of a snapshot, none for its later
// pages, which a connection reads one after the other.
func (sn *snapshots) spacing(q streamapi.SnapshotRequest) time.Duration {
	if q.After != "" {
		return 0
	}
	return sn.g.cfg.SnapshotCoalesce
}

// fetch reads r's snapshot while holding one of the gateway's catch-up
// tokens (MaxCatchUpsTotal bounds the reads under way, shared or not),
// and builds the whole sync frame once for all its waiters.
func (sn *snapshots) fetch(r *snapshotRead) (streamapi.SnapshotResult, []byte, error) {
	select {
	case sn.g.catchUps <- struct{}{}:
	case <-r.ctx.Done():
		return streamapi.SnapshotResult{}, nil, r.ctx.Err()
	}
	defer func() { <-sn.g.catchUps }()
	q := r.q
	sn.reads.Add(1)
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

// waiting is how many subscriptions wait for a read of q's key: the one
// under way and the one due after it.
func (sn *snapshots) waiting(q streamapi.SnapshotRequest) int {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	n := 0
	if slot := sn.keys[keyOf(q)]; slot != nil {
		for _, r := range []*snapshotRead{slot.reading, slot.next} {
			if r != nil {
				select {
				case <-r.done:
				default:
					n += r.waiters
				}
			}
		}
	}
	return n
}

// historyKey is what a history read returns the same thing for.
type historyKey struct {
	stream, group string
	seq           uint64
}

// historyRead is one shared history read; its result is set before done
// closes.
type historyRead struct {
	done   chan struct{}
	ended  time.Time // under snapshots.mu; zero while reading
	frames [][]byte
	last   uint64
	ok     bool
	err    error
}

// since reads the group's events after seq, or shares a read of the same
// events under way or ended less than SnapshotCoalesce ago (the joins of a
// storm that shared a snapshot all read history from its seq). One that
// started before the caller subscribed may end before events the caller
// missed; the caller then reads again from where it ended
// (subscription.floor). The read runs on the first caller's ctx: if it
// ends, the others get its error and try again.
func (sn *snapshots) since(ctx context.Context, stream, group string, seq uint64) ([][]byte, uint64, bool, error) {
	k := historyKey{stream, group, seq}
	keep := sn.g.cfg.SnapshotCoalesce
	sn.mu.Lock()
	r := sn.history[k]
	if r != nil && !r.ended.IsZero() && (r.err != nil || time.Since(r.ended) >= keep) {
		r = nil
	}
	if r == nil {
		for hk, h := range sn.history { // drop the stale ones
			if !h.ended.IsZero() && time.Since(h.ended) >= keep {
				delete(sn.history, hk)
			}
		}
		r = &historyRead{done: make(chan struct{})}
		sn.history[k] = r
		sn.mu.Unlock()
		sn.historyReads.Add(1)
		r.frames, r.last, r.ok, r.err = sn.g.cfg.Backend.Since(ctx, stream, group, seq)
		sn.mu.Lock()
		r.ended = time.Now()
		if keep <= 0 && sn.history[k] == r {
			delete(sn.history, k)
		}
		sn.mu.Unlock()
		close(r.done)
		return r.frames, r.last, r.ok, r.err
	}
	sn.mu.Unlock()
	select {
	case <-r.done:
		return r.frames, r.last, r.ok, r.err
	case <-ctx.Done():
		return nil, 0, false, ctx.Err()
	}
}
