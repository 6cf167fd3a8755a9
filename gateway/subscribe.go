package gateway

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/internal/wsconn"
	"github.com/trinehq/trine/streammodule/streamapi"
	"github.com/trinehq/trine/streammodule/wire"
)

// subscription is one (stream, group[, item]) watched by a connection.
// Until its snapshot or history is queued it buffers live events; then it
// drops any event at or below the sequence already delivered.
type subscription struct {
	c          *conn
	id         string
	quotedID   []byte // nil: frames carry no subscriptionId
	stream     string
	group      string
	item       string
	quotedItem []byte // the item id as frames encode it; nil for a group
	hg         *hubGroup
	// presence, if set, makes the connection a member and s a presence
	// subscriber; presenceKey is its identity.
	presence    *presenceWant
	presenceKey wire.MemberKey
	// presenceSynced: s's presence sync (or count) is queued, so its
	// join was allowed; only then may it have pages.
	presenceSynced atomic.Bool

	mu        sync.Mutex
	live      bool
	buf       [][]byte // the subscription's events received while catching up
	bufAll    []uint64 // every sequence of the group received meanwhile
	last      uint64   // the last sequence delivered
	seen      uint64   // the last sequence of the group accounted for (delivered or not ours)
	floor     uint64   // the group's last sequence the hub had delivered when s joined it
	cancelled bool
	joined    bool // stream:join allowed it, so leave is due
	// inPresence: s is a member; presenceEnded: its reservation is
	// released (once).
	inPresence    bool
	presenceEnded bool
	// The contract version the subscriber was last told (by a sync or
	// a schema frame), and, while it catches up (caughtUp false), the
	// newest one noticed meanwhile: goLive tells it after the catch-up.
	contract    uint64
	contractDue uint64
	caughtUp    bool
}

func (s *subscription) info() streamapi.Subscription {
	in := streamapi.Subscription{SubscriptionID: s.id, StreamName: s.stream, GroupID: s.group, Context: s.c.authCtx}
	if s.item != "" {
		item := s.item
		in.ID = &item
	}
	if s.presence != nil {
		in.Presence = &streamapi.SubscriptionPresence{Identity: s.presenceKey.Identity, Anonymous: s.presenceKey.Anonymous, Meta: s.presence.meta}
	}
	return in
}

// offer takes an event of the subscription's group; match says whether it
// is the subscription's (its item's, for an item subscription). Events
// come in sequence order, so a live subscription that sees a jump has
// missed some (NATS dropped them for a slow consumer, lost them with a
// node, or the group's interest had not reached the publisher's node yet):
// it buffers again and catches up from the last sequence it accounted for.
// With h set, the connection's hand-off to the writer pool is left to h.
func (s *subscription) offer(seq uint64, frame []byte, match bool, commit int64, h *handoff) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancelled {
		return
	}
	if s.live && seq > s.seen+1 {
		s.live = false
		since := s.seen
		c := s.c
		c.mu.Lock()
		if !c.closing {
			c.joins.Add(1)
			go func() {
				defer c.joins.Done()
				c.catchUp(s, &since)
			}()
		}
		c.mu.Unlock()
	}
	if !s.live {
		// bufAll holds every buffered frame's sequence and more, so it
		// bounds both.
		if len(s.bufAll) >= s.c.g.cfg.QueueMessages {
			s.cancelled = true
			s.c.slowClose("slow consumer: too many events during the snapshot; reconnect with since", "buffered", len(s.bufAll))
			return
		}
		s.bufAll = append(s.bufAll, seq)
		if match {
			s.buf = append(s.buf, frame)
		}
		return
	}
	s.seen = max(s.seen, seq)
	if match && seq > s.last {
		s.last = seq
		s.c.g.deliveries.Add(1)
		s.c.enqueueTo(out{data: frame, sub: s.quotedID, seq: seq, commit: commit}, h)
	}
}

// goLive queues the catch-up frames (a snapshot, or history ending at
// last; or the last part of a paged snapshot), then the buffered events that continue them without a gap, and
// switches to live delivery. If events are still missing after the
// buffered ones (in flight from another engine, say), it keeps the rest
// buffered and reports live false: the caller catches up again from
// position. gone reports that the subscription ended meanwhile.
func (s *subscription) goLive(catchUp [][]byte, final []byte, last uint64, synced *uint64) (live, gone bool, position uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if final != nil { // a message in parts must end, even for a subscription that left
		s.c.enqueue(out{data: final, sub: s.quotedID, frag: fragLast, catchUp: true})
	}
	if s.cancelled {
		return false, true, 0
	}
	for _, f := range catchUp {
		seq, id, ok := wire.Header(f)
		if ok && s.quotedItem != nil && !bytes.Equal(id, s.quotedItem) {
			continue // history of another item
		}
		if ok && seq <= s.last && seq != last {
			continue // delivered before (a snapshot always goes out)
		}
		s.c.enqueue(out{data: f, sub: s.quotedID, seq: seq, catchUp: true})
	}
	// The newest contract version the subscriber was told, noticed while
	// it caught up, or known to the gateway (a snapshot read shared with
	// an earlier join can predate a definition, and a resume with since
	// has no sync frame): a sync frame tells the version its snapshot was
	// read under, and a schema frame follows it when that is older.
	s.caughtUp = true
	told := max(s.contract, s.contractDue, s.c.g.contracts.version(s.stream))
	s.contractDue = 0
	switch {
	case synced != nil && *synced >= told:
		s.contract = *synced
	case synced != nil || told > s.contract:
		s.contract = told
		s.c.enqueue(out{data: wire.Schema(s.stream, s.group, s.item, told, time.Now()), sub: s.quotedID})
	}
	s.last = max(s.last, last)
	// How far the group's sequences run on without a gap.
	pos := last
	slices.Sort(s.bufAll)
	rest := s.bufAll[:0]
	for _, seq := range s.bufAll {
		switch {
		case seq <= pos:
		case seq == pos+1 && len(rest) == 0:
			pos = seq
		default:
			rest = append(rest, seq)
		}
	}
	s.bufAll = rest
	slices.SortFunc(s.buf, func(a, b []byte) int {
		sa, _, _ := wire.Header(a)
		sb, _, _ := wire.Header(b)
		return cmp.Compare(sa, sb)
	})
	keep := s.buf[:0]
	for _, f := range s.buf {
		seq, _, ok := wire.Header(f)
		switch {
		case !ok || seq <= s.last:
		case seq <= pos:
			s.last = seq
			s.c.enqueue(out{data: f, sub: s.quotedID, seq: seq, catchUp: true})
		default:
			keep = append(keep, f)
		}
	}
	s.buf = keep
	s.seen = pos
	// A shared read may have started before s joined the hub: events up
	// to floor reached the hub before s did, so they must come from
	// history (the caller catches up from pos).
	if len(s.bufAll) > 0 || pos < s.floor {
		return false, false, pos
	}
	s.buf, s.bufAll, s.live = nil, nil, true
	return true, false, pos
}

func (s *subscription) cancel() {
	s.mu.Lock()
	s.cancelled, s.buf = true, nil
	s.mu.Unlock()
}

// hub shares one Events subscription per group among the local
// subscriptions to it, and drops it with the last one.
type hub struct {
	g      *Gateway
	mu     sync.Mutex
	groups map[groupKey]*hubGroup
}

type groupKey struct{ stream, group string }

type hubGroup struct {
	key    groupKey
	ready  chan struct{} // closed once Subscribe returned
	err    error
	cancel func()

	mu   sync.RWMutex
	subs map[*subscription]struct{}
	last atomic.Uint64 // the highest sequence delivered
	// labels learns the group's stream at its first event.
	labels   *streamLabels
	labelled atomic.Bool
}

func newHub(g *Gateway) *hub { return &hub{g: g, groups: make(map[groupKey]*hubGroup)} }

// add attaches s to its group, subscribing to the group's events first if
// it is the group's first local subscriber.
func (h *hub) add(s *subscription) error {
	k := groupKey{s.stream, s.group}
	h.mu.Lock()
	hg := h.groups[k]
	created := hg == nil
	if created {
		hg = &hubGroup{key: k, ready: make(chan struct{}), subs: make(map[*subscription]struct{}), labels: h.g.labels}
		h.groups[k] = hg
	}
	hg.mu.Lock()
	hg.subs[s] = struct{}{}
	// Every event after floor reaches s (deliver holds hg.mu to read).
	s.mu.Lock()
	s.floor = hg.last.Load()
	s.mu.Unlock()
	hg.mu.Unlock()
	s.hg = hg
	h.mu.Unlock()
	if created {
		hg.cancel, hg.err = h.subscribeEvents(hg)
		close(hg.ready)
	} else {
		<-hg.ready
	}
	return hg.err
}

// remove detaches s; the last subscriber of a group drops its events.
func (h *hub) remove(s *subscription) {
	h.mu.Lock()
	hg := s.hg
	if hg == nil {
		h.mu.Unlock()
		return
	}
	hg.mu.Lock()
	delete(hg.subs, s)
	last := len(hg.subs) == 0
	hg.mu.Unlock()
	if last && h.groups[hg.key] == hg {
		delete(h.groups, hg.key)
	} else {
		last = false
	}
	h.mu.Unlock()
	if last {
		<-hg.ready
		if hg.cancel != nil {
			hg.cancel()
		}
	}
}

// deliver fans one event out to the group's local subscribers and
// reports how many it offered it to.
func (hg *hubGroup) deliver(frame []byte) int {
	seq, id, ok := wire.Header(frame)
	if !ok {
		return 0
	}
	commit, _ := wire.Timestamp(frame)
	if !hg.labelled.Load() && hg.labelled.CompareAndSwap(false, true) {
		hg.labels.learn(hg.key.stream)
	}
	h := handoffs.Get().(*handoff)
	defer func() {
		h.flush()
		h.pool = nil
		handoffs.Put(h)
	}()
	hg.mu.RLock()
	defer hg.mu.RUnlock()
	for old := hg.last.Load(); seq > old && !hg.last.CompareAndSwap(old, seq); old = hg.last.Load() {
	}
	for s := range hg.subs {
		s.offer(seq, frame, s.quotedItem == nil || bytes.Equal(id, s.quotedItem), commit, h)
	}
	return len(hg.subs)
}

// joinRequest is a parsed join.
type joinRequest struct {
	id       string
	stream   string
	group    string
	item     string
	since    *uint64
	presence *presenceWant // reserved by the caller
}

// join authorises and starts a subscription; it runs on its own goroutine
// so that a slow join handler never holds up the connection's other frames.
func (c *conn) join(r joinRequest, withID bool) {
	s := &subscription{c: c, id: r.id, stream: r.stream, group: r.group, item: r.item, presence: r.presence}
	if withID {
		s.quotedID = wire.String(nil, r.id)
	}
	if r.item != "" {
		s.quotedItem = wire.ItemID(nil, r.item)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		c.endPresence(s)
		return
	}
	old := c.subs.get(r.id)
	if old == nil && c.subs.len() >= c.g.cfg.MaxSubscriptions {
		c.mu.Unlock()
		c.endPresence(s)
		c.sendError(s.quotedID, "too_many_subscriptions", "this connection has reached its subscription limit")
		return
	}
	c.subs.put(s)
	c.joins.Add(1)
	c.mu.Unlock()
	if old != nil {
		c.drop(old)
	}
	go func() {
		defer c.joins.Done()
		c.start(s, r.since)
	}()
}

func (c *conn) start(s *subscription, since *uint64) {
	b := c.g.cfg.Backend
	if s.presence != nil {
		s.presenceKey = c.identity()
	}
	if t := c.token.Load(); t != nil && !t.Allows(s.stream, s.group) {
		c.g.log.Debug("stream join denied by the token's streams claim", "stream", s.stream, "group", s.group)
		c.forget(s)
		c.endPresence(s)
		c.denied(s)
		return
	}
	if err := b.Join(c.ctx, s.info()); err != nil {
		c.g.log.Debug("stream join denied", "stream", s.stream, "group", s.group, "error", err)
		c.forget(s)
		c.endPresence(s)
		c.denied(s)
		return
	}
	s.mu.Lock()
	if s.cancelled { // left while the join handlers ran
		s.mu.Unlock()
		c.endPresence(s)
		b.Leave(s.info())
		return
	}
	s.joined = true
	s.mu.Unlock()
	if err := c.g.hub.add(s); err != nil {
		c.g.log.Error("stream subscribe failed", "stream", s.stream, "group", s.group, "error", err)
		c.failSub(s, "unavailable", "cannot subscribe to the group right now")
		return
	}
	if s.presence != nil {
		s.mu.Lock()
		if !s.presenceEnded && !s.cancelled {
			s.inPresence = true
			c.g.presence.add(s)
		}
		s.mu.Unlock()
	}
	c.catchUp(s, since)
}

// endPresence ends s's membership, if it has one, and releases its
// presence reservation; it runs once whatever calls it.
func (c *conn) endPresence(s *subscription) {
	if s.presence == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.presenceEnded {
		return
	}
	s.presenceEnded = true
	if s.inPresence {
		s.inPresence = false
		c.g.presence.remove(s)
	}
	c.g.presence.release(c, s.presence)
}

// catchUp queues what s is missing, a snapshot or the events after since,
// and switches it to live delivery.
func (c *conn) catchUp(s *subscription, since *uint64) {
	for attempt := 0; ; attempt++ {
		next, again := c.catchUpOnce(s, since, attempt)
		if !again {
			return
		}
		if attempt+1 >= maxCatchUps {
			c.failSub(s, "unavailable", "missed events could not be recovered; reconnect with since")
			return
		}
		// Events are missing between what history gave and what arrived
		// (or history could not be read): they are most likely still on
		// their way. Wait, then go on from where the subscription is.
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
		since = next
	}
}

// catchUpOnce is one attempt of catchUp. It reports whether to try again,
// and from where.
//
// A connection has at most MaxCatchUps catch-ups whose frames its writer
// has not taken yet, and the gateway reads at most MaxCatchUpsTotal
// snapshots, pages or histories at once: a socket that sends a thousand
// joins of a large group and never reads holds a few snapshots, not a
// thousand. Joins that wait for the same snapshot share one read, and its
// frame (snapshots).
func (c *conn) catchUpOnce(s *subscription, since *uint64, attempt int) (next *uint64, again bool) {
	if !c.acquireCatchUp() {
		return nil, false
	}
	defer c.afterQueued(c.releaseCatchUp)
	// Contract notices wait for this catch-up's frames (goLive).
	s.mu.Lock()
	s.caughtUp = false
	s.mu.Unlock()

	var catchUp [][]byte
	var last uint64
	resync := attempt > 0 && attempt%catchUpsPerResync == 0
	if since != nil && !resync {
		frames, l, ok, err := c.since(s, *since)
		switch {
		case err != nil:
			// Ask again after a wait (a fresh snapshot every
			// catchUpsPerResync tries), rather than resync at once.
			if c.ctx.Err() != nil {
				return nil, false
			}
			c.g.log.Warn("stream history failed; trying again", "stream", s.stream, "group", s.group, "since", *since, "attempt", attempt, "error", err)
			return since, true
		case ok:
			catchUp, last = frames, l
		default:
			resync = true
		}
	}
	var final []byte   // the last part of a paged snapshot
	var synced *uint64 // the contract version the sync frame tells
	if since == nil || resync {
		if resync {
			c.g.resyncs.Add(1)
		}
		q := streamapi.SnapshotRequest{StreamName: s.stream, GroupID: s.group, ItemID: s.item, Resync: resync,
			PageBytes: c.g.cfg.SnapshotPageBytes}
		// hub.add has returned: s buffers the group's events, so it may
		// share a read that starts from now on (snapshots).
		res, frame, err := c.g.snapshots.read(c.ctx, q)
		if err != nil {
			c.snapshotFailed(s, err)
			return nil, false
		}
		switch {
		case frame != nil:
			catchUp = [][]byte{frame}
		default:
			turn := c.fragTurnChan()
			select {
			case turn <- struct{}{}:
			case <-c.ctx.Done():
				return nil, false
			}
			defer func() { <-turn }()
			final, err = c.pages(q, res)
			if err != nil {
				c.snapshotFailed(nil, err)
				return nil, false
			}
		}
		last, synced = res.Seq, &res.Contract
	}
	live, gone, pos := s.goLive(catchUp, final, last, synced)
	switch {
	case gone:
		c.g.hub.remove(s) // dropped while catching up; remove is idempotent
		return nil, false
	case live:
		return nil, false
	}
	return &pos, true
}

// since reads the group's events after seq, holding a gateway-wide
// catch-up token meanwhile.
func (c *conn) since(s *subscription, seq uint64) ([][]byte, uint64, bool, error) {
	select {
	case c.g.catchUps <- struct{}{}:
	case <-c.ctx.Done():
		return nil, 0, false, c.ctx.Err()
	}
	defer func() { <-c.g.catchUps }()
	return c.g.snapshots.since(c.ctx, s.stream, s.group, seq)
}

// snapshotFailed ends s (nil: the whole connection, whose paged snapshot
// is cut short) because its snapshot could not be read.
func (c *conn) snapshotFailed(s *subscription, err error) {
	if c.ctx.Err() != nil {
		return
	}
	if s == nil {
		c.g.log.Warn("stream snapshot failed midway: closing", "addr", c.addr, "error", err)
		c.shutdown(wsconn.CloseServerError, "snapshot_failed; reconnect")
		return
	}
	c.g.log.Warn("stream snapshot failed", "stream", s.stream, "group", s.group, "error", err)
	c.failSub(s, "snapshot_failed", err.Error())
}

// syncFrame appends res's items to the start of a sync frame, and its end,
// with the ids of every item in it (ids, earlier pages', then res's).
func syncFrame(q streamapi.SnapshotRequest, res streamapi.SnapshotResult, ids []string, b []byte) []byte {
	b, ids = appendItems(b, res.Items, ids)
	return wire.SyncEnd(b, ids, q.Resync, res.Contract)
}

func appendItems(b []byte, items []streamapi.PageItem, ids []string) ([]byte, []string) {
	for _, it := range items {
		if len(ids) > 0 {
			b = append(b, ',')
		}
		b = append(b, it.Data...)
		ids = append(ids, it.ID)
	}
	return b, ids
}

// pages queues a group snapshot of several pages (res is the first) as
// one message in parts, every part but the last, which it returns for
// goLive to queue. A page is read once the part before the previous one
// has left the queue, so that the connection holds about three pages; a
// gateway-wide catch-up token is held only while a page is read, and
// connections at the same page of the same group share its read. The message carries the first page's sequence:
// later pages may already reflect later events, which follow the message
// as usual, so a client that applies them ends with the group's state.
func (c *conn) pages(q streamapi.SnapshotRequest, res streamapi.SnapshotResult) ([]byte, error) {
	var ids []string
	part := wire.SyncStart(res.Seq, q.StreamName, q.GroupID, time.Now())
	frag, seq, contract := byte(fragFirst), res.Seq, res.Contract
	var taken chan struct{} // closed when the part before the last queued leaves the queue
	for {
		part, ids = appendItems(part, res.Items, ids)
		if !res.More {
			return wire.SyncEnd(part, ids, q.Resync, contract), nil
		}
		if taken != nil {
			select {
			case <-taken:
			case <-c.ctx.Done():
				return nil, c.ctx.Err()
			}
		}
		ch := make(chan struct{})
		c.enqueue(out{data: part, seq: seq, frag: frag, catchUp: true, done: func() { close(ch) }})
		taken, frag, seq, part = ch, fragMiddle, 0, nil
		q.After = ids[len(ids)-1]
		var err error
		res, _, err = c.g.snapshots.read(c.ctx, q)
		if err == nil && (res.Frame != nil || res.Items == nil) {
			err = errors.New("the backend returned no snapshot page")
		}
		if err != nil {
			return nil, err
		}
	}
}

// A subscription that keeps finding events missing catches up again,
// waiting 10 ms longer each time, with a fresh snapshot every
// catchUpsPerResync tries (the first after about half a second: events
// from several engines can cross on their way for that long on a loaded
// machine), and gives up after maxCatchUps (about four and a half seconds).
const (
	catchUpsPerResync = 10
	maxCatchUps       = 30
)

// failSub ends a subscription that cannot be served, with an error frame.
// A socket opened for that subscription alone is closed (1011) so that the
// client reconnects; on the multiplexed socket the client may join again.
func (c *conn) failSub(s *subscription, code, msg string) {
	c.forget(s)
	c.drop(s)
	c.sendError(s.quotedID, code, msg)
	if s.quotedID == nil {
		c.closeAfterQueue(wsconn.CloseServerError, code+"; reconnect")
	}
}

// forget removes s from the connection's subscriptions if it is still there.
func (c *conn) forget(s *subscription) {
	c.mu.Lock()
	if c.subs.get(s.id) == s {
		c.subs.remove(s.id)
	}
	c.mu.Unlock()
}

// leave ends the subscription id, if there is one.
func (c *conn) leave(id string) {
	c.mu.Lock()
	s := c.subs.remove(id)
	c.mu.Unlock()
	if s != nil {
		c.drop(s)
	}
}

// drop stops s and, if its join was allowed, fires stream:leave.
func (c *conn) drop(s *subscription) {
	s.cancel()
	c.g.hub.remove(s)
	c.endPresence(s)
	s.mu.Lock()
	joined := s.joined
	s.joined = false
	s.mu.Unlock()
	if joined {
		c.g.cfg.Backend.Leave(s.info())
	}
}

// denied tells the client that s is not allowed; a socket opened for s
// alone closes (1008).
func (c *conn) denied(s *subscription) {
	c.enqueue(out{data: wire.Unauthorized(s.stream, s.group, s.item, time.Now()), sub: s.quotedID})
	if s.quotedID == nil { // the socket was for this subscription only
		c.closeAfterQueue(wsconn.ClosePolicy, "unauthorized")
	}
}

func (c *conn) sendError(quotedSub []byte, code, msg string) {
	c.enqueue(out{data: wire.Error(code, msg), sub: quotedSub})
}
