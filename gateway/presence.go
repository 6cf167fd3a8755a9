package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/wire"
)

// Presence defaults for Config.
const (
	DefaultPresenceGrace         = 5 * time.Second
	DefaultPresenceMaxMembers    = 1000
	DefaultPresenceMaxMetaBytes  = 1024
	DefaultPresenceMaxPerConn    = 16
	DefaultPresenceMaxTotal      = 100_000
	DefaultPresenceMaxTotalBytes = 64 << 20
	DefaultPresenceRateBytes     = 4 << 20
)

// PresenceStore shares each gateway's presence members with the other
// gateways (natsfanout.Presence): one entry per group and gateway, in
// chunks of at most MaxEntryBytes, which the store forgets when its
// gateway stops renewing them.
type PresenceStore interface {
	// Put replaces this gateway's entry of a group with chunks (each a
	// wire.PresenceEntry); none deletes it.
	Put(ctx context.Context, stream, group string, chunks [][]byte) error
	// MaxEntryBytes is the largest chunk Put takes.
	MaxEntryBytes() int
	// Watch calls h with the other gateways' chunks of the group, each
	// from a writer (a gateway's chunk), (nil: gone) and when each was
	// written (zero: unknown), first those there now and then done, then
	// as they change, until cancel. h must not block.
	Watch(stream, group string, h func(writer string, entry []byte, written time.Time), done func()) (cancel func(), err error)
	// Entries returns every gateway's chunks of a group, this one's included.
	Entries(ctx context.Context, stream, group string) ([][]byte, error)
	// Heartbeat is how often entries must be written again to stay.
	Heartbeat() time.Duration
	// TTL is how long an entry stays without being written again. Each
	// gateway also forgets another's entry not renewed within it, so that
	// a deletion it missed (its link was down when the entry expired)
	// leaves no ghost.
	TTL() time.Duration
}

// presenceCost is what a presence subscription counts against the
// bytes limits besides its meta.
const presenceCost = 128

// presenceFlush is how often changed entries are written and count events
// sent (at most every other flush).
const presenceFlush = 50 * time.Millisecond

// presenceWant is a join's presence request.
type presenceWant struct {
	meta json.RawMessage // compact, or nil
}

// parsePresence reads a join's "presence" field. It returns nil for no
// presence, or the error frame's code and message.
func (g *Gateway) parsePresence(raw json.RawMessage) (*presenceWant, string, string) {
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case "", "null", "false":
		return nil, "", ""
	case "true":
		return &presenceWant{}, "", ""
	}
	if raw[0] != '{' {
		return nil, "bad_frame", "presence must be true, false or {\"meta\": {…}}"
	}
	// The engine's rules for JSON values (valid UTF-8, no lone
	// surrogate), and each field once: a repeated one is ambiguous.
	if err := engine.ValidJSONText(raw); err != nil {
		return nil, "bad_frame", "presence: " + err.Error()
	}
	var o map[string]json.RawMessage
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, "bad_frame", "presence: " + err.Error()
	}
	if n, err := countFields(raw); err != nil || n != len(o) {
		return nil, "bad_frame", "presence: a field appears more than once"
	}
	w := &presenceWant{}
	for k, v := range o {
		if k != "meta" {
			return nil, "bad_frame", "presence takes only meta, not " + strconv.Quote(k)
		}
		v = bytes.TrimSpace(v)
		if string(v) == "null" {
			continue
		}
		if len(v) == 0 || v[0] != '{' {
			return nil, "bad_frame", "presence meta must be a JSON object"
		}
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return nil, "bad_frame", "presence meta: " + err.Error()
		}
		if b.Len() > g.cfg.PresenceMaxMetaBytes {
			return nil, "presence_meta_too_large", fmt.Sprintf("presence meta is %d bytes, the limit is %d", b.Len(), g.cfg.PresenceMaxMetaBytes)
		}
		w.meta = b.Bytes()
	}
	return w, "", ""
}

// countFields counts the fields of JSON object raw (valid JSON).
func countFields(raw []byte) (int, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if _, err := d.Token(); err != nil {
		return 0, err
	}
	n := 0
	for d.More() {
		if _, err := d.Token(); err != nil {
			return 0, err
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// presence tracks this gateway's members per group, merges the other
// gateways' (through Config.Presence), and tells presence subscribers.
//
// Lock order: presence.mu, then a conn's mu (frames are queued under
// presence.mu, so subscribers see events in the order of the view).
type presence struct {
	g     *Gateway
	store PresenceStore

	mu      sync.Mutex
	groups  map[groupKey]*pgroup
	deletes []groupKey // groups whose entry is to be deleted
	// pending are the groups whose subscribers have something to learn;
	// tokens is the presence delivery budget (bytes), refilled at
	// PresenceRateBytes a second.
	pending  map[*pgroup]struct{}
	tokens   float64
	refilled time.Time
	subs     int // presence subscriptions held (reserved)
	bytes    int
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup
	watchErr error // last watch failure, logged once per change
	// toWrite are the entries (nil: delete) the writer is to write;
	// writeKick wakes it.
	toWrite     map[groupKey][][]byte
	writeKick   chan struct{}
	writeErrors atomic.Int64 // entries not written
	warned      time.Time    // the last warning of a failed write
}

type pgroup struct {
	key    groupKey
	local  map[wire.MemberKey]*localMember
	remote map[string]map[wire.MemberKey]wire.Member // other gateways' entries
	// renewed is when each of remote was last written (or received, if
	// earlier): one not renewed within the TTL is forgotten.
	renewed map[string]time.Time
	// view is the members now; sent is what the synced subscribers were
	// told (at the last flush), changed the keys where they may differ.
	view    map[wire.MemberKey]wire.Member
	sent    map[wire.MemberKey]wire.Member
	changed map[wire.MemberKey]struct{}
	// subs are the presence subscribers; true once they got their sync.
	subs map[*subscription]bool
	// ready: the other gateways' entries are in (or there is no store).
	ready     bool
	large     bool // over PresenceMaxMembers: counts only
	sentCount int  // the count last sent while large
	syncFrame []byte
	dirty     bool // this gateway's entry is to be written
	cancel    func()
	watching  bool
}

type localMember struct {
	conns    map[*conn]int // presence subscriptions per connection
	pending  []*graceSlot  // connections gone, within the grace
	joinedAt int64
	meta     json.RawMessage
	metaAt   int64
}

// graceSlot is a connection that went, counted until its timer fires.
// Its timer is set and read under presence.mu.
type graceSlot struct{ t *time.Timer }

func newPresence(g *Gateway) *presence {
	p := &presence{g: g, store: g.cfg.Presence, groups: make(map[groupKey]*pgroup), stop: make(chan struct{}),
		pending: make(map[*pgroup]struct{}), tokens: float64(g.cfg.PresenceRateBytes), refilled: time.Now()}
	p.wg.Add(1)
	go p.flusher()
	if p.store != nil {
		p.toWrite, p.writeKick = make(map[groupKey][][]byte), make(chan struct{}, 1)
		p.wg.Add(1)
		go p.writer()
	}
	return p
}

// reserve counts a presence subscription of c against the limits. It
// reports the error frame's code and message on refusal.
func (p *presence) reserve(c *conn, w *presenceWant) (string, string) {
	cost := presenceCost + len(w.meta)
	c.mu.Lock()
	if int(c.presenceSubs) >= p.g.cfg.PresenceMaxPerConn {
		c.mu.Unlock()
		return "presence_limit", fmt.Sprintf("this connection has %d presence subscriptions, the limit (--presence-max-per-connection)", c.presenceSubs)
	}
	c.presenceSubs++
	c.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.subs >= p.g.cfg.PresenceMaxTotal || p.bytes+cost > p.g.cfg.PresenceMaxTotalBytes {
		c.mu.Lock()
		c.presenceSubs--
		c.mu.Unlock()
		return "presence_limit", "the gateway holds as many presence subscriptions as it may (--presence-max-total, --presence-max-total-bytes); try later"
	}
	p.subs++
	p.bytes += cost
	return "", ""
}

func (p *presence) release(c *conn, w *presenceWant) {
	c.mu.Lock()
	c.presenceSubs--
	c.mu.Unlock()
	p.mu.Lock()
	p.subs--
	p.bytes -= presenceCost + len(w.meta)
	p.mu.Unlock()
}

// identity is who c is for presence: the token's sub, or the auth
// context's identity, sub or user_id; else an anonymous identity of c's.
func (c *conn) identity() wire.MemberKey {
	if t := c.token.Load(); t != nil && t.Subject != "" {
		return wire.MemberKey{Identity: t.Subject}
	}
	var ctx map[string]json.RawMessage
	if json.Unmarshal(c.authCtx, &ctx) == nil {
		for _, k := range []string{"identity", "sub", "user_id"} {
			v := bytes.TrimSpace(ctx[k])
			if len(v) == 0 {
				continue
			}
			var s string
			if json.Unmarshal(v, &s) == nil && s != "" {
				return wire.MemberKey{Identity: s}
			}
			var n json.Number
			if json.Unmarshal(v, &n) == nil {
				return wire.MemberKey{Identity: n.String()}
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.anonID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		c.anonID = "anon:" + base64.RawURLEncoding.EncodeToString(b[:])
	}
	return wire.MemberKey{Identity: c.anonID, Anonymous: true}
}

// add makes s's connection a member of its group and s a presence
// subscriber: s gets a sync once the other gateways' members are in.
func (p *presence) add(s *subscription) {
	k := s.presenceKey
	now := time.Now().UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	pg := p.group(groupKey{s.stream, s.group})
	m := pg.local[k]
	if m == nil {
		m = &localMember{conns: make(map[*conn]int), joinedAt: now}
		pg.local[k] = m
	}
	if m.conns[s.c] == 0 && len(m.pending) > 0 {
		// A connection of this identity came back within the grace: it
		// takes the place of one that went.
		last := len(m.pending) - 1
		m.pending[last].t.Stop()
		m.pending = m.pending[:last]
	}
	m.conns[s.c]++
	if s.presence.meta != nil {
		m.meta, m.metaAt = s.presence.meta, now
	}
	pg.dirty = true
	p.refresh(pg, k)
	pg.subs[s] = false
	p.pending[pg] = struct{}{}
}

// group returns the group's state, watching the other gateways' entries
// when it is new. Callers hold p.mu.
func (p *presence) group(key groupKey) *pgroup {
	pg := p.groups[key]
	if pg != nil {
		return pg
	}
	pg = &pgroup{key: key, local: make(map[wire.MemberKey]*localMember), remote: make(map[string]map[wire.MemberKey]wire.Member),
		renewed: make(map[string]time.Time),
		view:    make(map[wire.MemberKey]wire.Member), sent: make(map[wire.MemberKey]wire.Member),
		changed: make(map[wire.MemberKey]struct{}), subs: make(map[*subscription]bool)}
	p.groups[key] = pg
	if p.store == nil {
		pg.ready = true
		return pg
	}
	pg.watching = true
	p.wg.Add(1)
	go p.watch(pg)
	return pg
}

// watch starts watching pg's entries of the other gateways.
func (p *presence) watch(pg *pgroup) {
	defer p.wg.Done()
	cancel, err := p.store.Watch(pg.key.stream, pg.key.group,
		func(gw string, entry []byte, written time.Time) { p.remoteEntry(pg, gw, entry, written) },
		func() { p.remoteReady(pg) })
	p.mu.Lock()
	if err != nil {
		if p.watchErr == nil || p.watchErr.Error() != err.Error() {
			p.g.log.Warn("presence of other gateways unavailable: this gateway's members only", "stream", pg.key.stream, "group", pg.key.group, "error", err)
		}
		p.watchErr = err
		pg.watching = false
		p.markReady(pg)
		p.mu.Unlock()
		return
	}
	p.watchErr = nil
	if p.groups[pg.key] != pg || p.closed { // gone meanwhile
		pg.watching = false
		p.mu.Unlock()
		cancel()
		return
	}
	pg.cancel = cancel
	p.mu.Unlock()
}

func (p *presence) remoteReady(pg *pgroup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.markReady(pg)
}

// markReady lets the group's subscribers have their sync. Callers hold
// p.mu.
func (p *presence) markReady(pg *pgroup) {
	if pg.ready {
		return
	}
	pg.ready = true
	p.pending[pg] = struct{}{}
}

// remoteEntry takes another gateway's entry of pg (nil: gone), written
// at written (zero: now).
func (p *presence) remoteEntry(pg *pgroup, gw string, entry []byte, written time.Time) {
	var e wire.PresenceEntry
	if entry != nil {
		if err := json.Unmarshal(entry, &e); err != nil {
			p.g.log.Warn("bad presence entry ignored", "gateway", gw, "error", err)
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.groups[pg.key] != pg {
		return
	}
	if now := time.Now(); written.IsZero() || written.After(now) {
		written = now
	}
	if entry != nil && p.store != nil && time.Since(written) >= p.store.TTL() {
		entry = nil // written too long ago: its gateway stopped renewing it
	}
	p.setRemote(pg, gw, entry, e, written)
}

// setRemote replaces gw's members of pg (entry nil: none). Callers hold
// p.mu.
func (p *presence) setRemote(pg *pgroup, gw string, entry []byte, e wire.PresenceEntry, written time.Time) {
	keys := map[wire.MemberKey]struct{}{}
	for k := range pg.remote[gw] {
		keys[k] = struct{}{}
	}
	if entry == nil {
		delete(pg.remote, gw)
		delete(pg.renewed, gw)
	} else {
		pg.renewed[gw] = written
		ms := make(map[wire.MemberKey]wire.Member, len(e.Members))
		for _, m := range e.Members {
			if m.Connections > 0 {
				ms[m.Key()] = m
				keys[m.Key()] = struct{}{}
			}
		}
		pg.remote[gw] = ms
	}
	for k := range keys {
		p.refresh(pg, k)
	}
}

// merged is k's member across gateways; ok false when it has none.
func (pg *pgroup) merged(k wire.MemberKey) (wire.Member, bool) {
	var out wire.Member
	ok := false
	if m := pg.local[k]; m != nil {
		out = wire.Member{Identity: k.Identity, Anonymous: k.Anonymous, Connections: len(m.conns) + len(m.pending),
			JoinedAt: m.joinedAt, Meta: m.meta, MetaAt: m.metaAt}
		ok = out.Connections > 0
	}
	for _, ms := range pg.remote {
		m, in := ms[k]
		switch {
		case !in:
		case ok:
			out = wire.Combine(out, m)
		default:
			out, ok = m, true
		}
	}
	return out, ok
}

// refresh recomputes k's member; the next flush tells the subscribers.
// Callers hold p.mu.
func (p *presence) refresh(pg *pgroup, k wire.MemberKey) {
	old, had := pg.view[k]
	now, has := pg.merged(k)
	switch {
	case !had && !has:
		return
	case !has:
		delete(pg.view, k)
	case had && old.Connections == now.Connections && old.JoinedAt == now.JoinedAt && bytes.Equal(old.Meta, now.Meta):
		return
	default:
		pg.view[k] = now
	}
	pg.changed[k] = struct{}{}
	p.pending[pg] = struct{}{}
}

// delivery is what one flush queues for some subscribers of a group.
type delivery struct {
	subs   []*subscription
	frames [][]byte
	first  bool // the subscribers' first frame: they are synced once it is queued
}

// frameCost is what a frame costs against the budget besides its bytes.
const frameCost = 64

// prepare takes what pg's subscribers have to learn, within budget
// bytes: events (or, when cheaper, a sync) for the synced subscribers,
// then a sync (or the count) for as many new ones as the rest of the
// budget pays for. The events go out whatever they cost when full (the
// budget is whole), so that a large group is slowed, never starved. It
// returns the deliveries, their cost in bytes, and whether pg has more to
// send. Callers hold p.mu.
func (p *presence) prepare(pg *pgroup, budget float64, full bool) ([]delivery, int, bool) {
	var synced, fresh []*subscription
	for s, ok := range pg.subs {
		if ok {
			synced = append(synced, s)
		} else {
			fresh = append(fresh, s)
		}
	}
	toSynced, commit := p.changes(pg)
	cost := 0
	for _, f := range toSynced {
		cost += len(synced) * (len(f) + frameCost)
	}
	if len(synced) > 0 && len(toSynced) > 0 && float64(cost) > budget && !full {
		return nil, 0, true // wait for a whole budget
	}
	commit()
	var out []delivery
	if len(synced) > 0 && len(toSynced) > 0 {
		out = append(out, delivery{subs: synced, frames: toSynced})
	}
	first := pg.sync()
	if pg.large {
		first = wire.PresenceCount(len(pg.view))
	}
	n := 0
	for _, s := range fresh {
		if n > 0 && float64(cost+len(first)+frameCost) > budget {
			break
		}
		pg.subs[s] = true
		cost += len(first) + frameCost
		n++
	}
	if n > 0 {
		out = append(out, delivery{fresh[:n], [][]byte{first}, true})
	}
	return out, cost, n < len(fresh)
}

// changes returns the frames that tell synced subscribers what changed
// since the last flush, and commit, which records them as told.
func (p *presence) changes(pg *pgroup) ([][]byte, func()) {
	switch n := len(pg.view); {
	case n > p.g.cfg.PresenceMaxMembers:
		var fs [][]byte
		if !pg.large || pg.sentCount != n {
			fs = [][]byte{wire.PresenceCount(n)}
		}
		return fs, func() {
			pg.large, pg.sentCount = true, n
			clear(pg.changed)
		}
	case pg.large:
		sent := maps.Clone(pg.view)
		ms := make([]wire.Member, 0, len(sent))
		for _, m := range sent {
			ms = append(ms, m)
		}
		wire.SortMembers(ms)
		f := wire.PresenceSync(ms)
		return [][]byte{f}, func() {
			pg.large, pg.sent, pg.syncFrame = false, sent, f
			clear(pg.changed)
		}
	}
	var fs [][]byte
	size := 0
	type change struct {
		k   wire.MemberKey
		m   wire.Member
		has bool
	}
	var cs []change
	for k := range pg.changed {
		old, had := pg.sent[k]
		now, has := pg.view[k]
		var f []byte
		switch {
		case !had && has:
			f = wire.PresenceMember("join", now)
		case had && !has:
			old.Connections = 0
			f = wire.PresenceMember("leave", old)
		case had && has && (old.Connections != now.Connections || old.JoinedAt != now.JoinedAt || !bytes.Equal(old.Meta, now.Meta)):
			f = wire.PresenceMember("update", now)
		default:
			continue
		}
		fs = append(fs, f)
		size += len(f) + frameCost
		cs = append(cs, change{k, now, has})
	}
	apply := func() {
		for _, c := range cs {
			if c.has {
				pg.sent[c.k] = c.m
			} else {
				delete(pg.sent, c.k)
			}
		}
		clear(pg.changed)
		if len(cs) > 0 {
			pg.syncFrame = nil
		}
	}
	if len(fs) > 1 {
		// Many changes at once: one sync may be less.
		sent := maps.Clone(pg.sent)
		for _, c := range cs {
			if c.has {
				sent[c.k] = c.m
			} else {
				delete(sent, c.k)
			}
		}
		if approx := len(sent) * 96; size > approx {
			ms := make([]wire.Member, 0, len(sent))
			for _, m := range sent {
				ms = append(ms, m)
			}
			wire.SortMembers(ms)
			f := wire.PresenceSync(ms)
			if size > len(f)+frameCost {
				return [][]byte{f}, func() { apply(); pg.syncFrame = f }
			}
		}
	}
	return fs, apply
}

// sync is the sync frame of what the subscribers were told, built once per
// change. Callers hold p.mu.
func (pg *pgroup) sync() []byte {
	if pg.syncFrame == nil {
		ms := make([]wire.Member, 0, len(pg.sent))
		for _, m := range pg.sent {
			ms = append(ms, m)
		}
		wire.SortMembers(ms)
		pg.syncFrame = wire.PresenceSync(ms)
	}
	return pg.syncFrame
}

func (pg *pgroup) members() []wire.Member {
	ms := make([]wire.Member, 0, len(pg.view))
	for _, m := range pg.view {
		ms = append(ms, m)
	}
	wire.SortMembers(ms)
	return ms
}

// remove ends s's membership: its connection's last presence subscription
// of the group leaves a pending connection for the grace.
func (p *presence) remove(s *subscription) {
	k := s.presenceKey
	key := groupKey{s.stream, s.group}
	p.mu.Lock()
	defer p.mu.Unlock()
	pg := p.groups[key]
	if pg == nil {
		return
	}
	delete(pg.subs, s)
	if m := pg.local[k]; m != nil && m.conns[s.c] > 0 {
		m.conns[s.c]--
		if m.conns[s.c] == 0 {
			delete(m.conns, s.c)
			if g := p.g.cfg.PresenceGrace; g > 0 && !p.closed {
				slot := &graceSlot{}
				slot.t = time.AfterFunc(g, func() { p.expire(key, k, slot) })
				m.pending = append(m.pending, slot)
			}
		}
		if len(m.conns)+len(m.pending) == 0 {
			delete(pg.local, k)
		}
		pg.dirty = true
		p.refresh(pg, k)
	}
	p.dropIfIdle(pg)
}

// expire ends a pending connection whose grace passed.
func (p *presence) expire(key groupKey, k wire.MemberKey, slot *graceSlot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pg := p.groups[key]
	if pg == nil || p.closed {
		return
	}
	m := pg.local[k]
	if m == nil {
		return
	}
	for i, ps := range m.pending {
		if ps == slot {
			m.pending = append(m.pending[:i], m.pending[i+1:]...)
			break
		}
	}
	if len(m.conns)+len(m.pending) == 0 {
		delete(pg.local, k)
	}
	pg.dirty = true
	p.refresh(pg, k)
	p.dropIfIdle(pg)
}

// dropIfIdle forgets a group with neither subscribers nor members here;
// its entry is deleted. Callers hold p.mu.
func (p *presence) dropIfIdle(pg *pgroup) {
	if len(pg.subs) > 0 || len(pg.local) > 0 || p.groups[pg.key] != pg {
		return
	}
	delete(p.groups, pg.key)
	if cancel := pg.cancel; cancel != nil && !p.closed {
		pg.cancel = nil
		p.wg.Add(1)
		go func() { defer p.wg.Done(); cancel() }()
	}
	if p.store != nil {
		p.deletes = append(p.deletes, pg.key)
	}
}

// entry encodes this gateway's members of pg as chunks of at most limit
// bytes (a member larger than that alone in its chunk). Callers hold p.mu.
func (pg *pgroup) entry(limit int) [][]byte {
	chunks := [][]byte{}
	b := []byte(`{"members":[`)
	n := 0
	for k, m := range pg.local {
		mb, _ := json.Marshal(wire.Member{Identity: k.Identity, Anonymous: k.Anonymous,
			Connections: len(m.conns) + len(m.pending), JoinedAt: m.joinedAt, Meta: m.meta, MetaAt: m.metaAt})
		if n > 0 && len(b)+1+len(mb)+2 > limit {
			chunks = append(chunks, append(b, ']', '}'))
			b, n = []byte(`{"members":[`), 0
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, mb...)
		n++
	}
	return append(chunks, append(b, ']', '}'))
}

type presenceWrite struct {
	key   groupKey
	entry [][]byte // nil: delete
}

// flusher writes changed entries every presenceFlush, every entry each
// heartbeat, and sends the count events of large groups.
func (p *presence) flusher() {
	defer p.wg.Done()
	t := time.NewTicker(presenceFlush)
	defer t.Stop()
	var beat time.Duration
	if p.store != nil {
		beat = p.store.Heartbeat()
	}
	lastBeat := time.Now()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			all := beat > 0 && now.Sub(lastBeat) >= beat
			if all {
				lastBeat = now
			}
			p.flush(now, all)
		}
	}
}

func (p *presence) flush(now time.Time, all bool) {
	var writes []presenceWrite
	p.mu.Lock()
	for _, k := range p.deletes {
		if p.groups[k] == nil {
			writes = append(writes, presenceWrite{key: k})
		}
	}
	p.deletes = p.deletes[:0]
	for _, pg := range p.groups {
		if all && p.store != nil && !pg.watching && !p.closed {
			// The store was not there when the group started (no
			// JetStream yet): try again each heartbeat.
			pg.watching = true
			p.wg.Add(1)
			go p.watch(pg)
		}
		if p.store != nil && (pg.dirty || (all && len(pg.local) > 0)) {
			pg.dirty = false
			writes = append(writes, presenceWrite{key: pg.key, entry: pg.entry(p.store.MaxEntryBytes())})
		}
	}
	// Tell subscribers, within the budget: a group whose turn comes while
	// the budget is positive goes, even past it (the debt delays the next
	// ones), so that a large group is slowed, never starved.
	rate := float64(p.g.cfg.PresenceRateBytes)
	p.tokens = min(rate, p.tokens+rate*now.Sub(p.refilled).Seconds())
	p.refilled = now
	var deliveries []delivery
	if p.store != nil {
		// Forget the other gateways' entries not renewed within the TTL,
		// whether or not their deletion was seen.
		ttl := p.store.TTL()
		for _, pg := range p.groups {
			for gw, at := range pg.renewed {
				if now.Sub(at) >= ttl {
					p.setRemote(pg, gw, nil, wire.PresenceEntry{}, time.Time{})
				}
			}
		}
	}
	for pg := range p.pending {
		if p.tokens <= 0 {
			break
		}
		if p.groups[pg.key] != pg {
			delete(p.pending, pg)
			continue
		}
		if !pg.ready {
			continue
		}
		ds, cost, more := p.prepare(pg, p.tokens, p.tokens >= rate)
		if !more {
			delete(p.pending, pg)
		}
		deliveries = append(deliveries, ds...)
		p.tokens -= float64(cost)
	}
	p.mu.Unlock()
	for _, d := range deliveries {
		for _, s := range d.subs {
			for _, f := range d.frames {
				s.c.enqueue(out{data: f, sub: s.quotedID})
			}
			if d.first {
				s.presenceSynced.Store(true)
			}
		}
	}
	p.queueWrites(writes)
}

// presenceWriters is how many entries the writer writes at once: with
// thousands of groups a heartbeat's writes take a fraction of the TTL.
const presenceWriters = 32

// queueWrites hands writes to the writer; a group's later write replaces
// one not written yet.
func (p *presence) queueWrites(writes []presenceWrite) {
	if len(writes) == 0 {
		return
	}
	p.mu.Lock()
	for _, w := range writes {
		p.toWrite[w.key] = w.entry
	}
	p.mu.Unlock()
	select {
	case p.writeKick <- struct{}{}:
	default:
	}
}

// writer writes the queued entries, presenceWriters at a time, each
// within a heartbeat, so that a slow or cut link never holds up the
// flusher (and the frames and local expiries it sends).
func (p *presence) writer() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.writeKick:
		}
		p.mu.Lock()
		batch := p.toWrite
		p.toWrite = make(map[groupKey][][]byte)
		p.mu.Unlock()
		timeout := min(5*time.Second, max(p.store.Heartbeat(), 100*time.Millisecond))
		sem := make(chan struct{}, presenceWriters)
		var wg sync.WaitGroup
		for key, entry := range batch {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := p.store.Put(ctx, key.stream, key.group, entry)
				cancel()
				if err != nil {
					p.writeFailed(key, entry, err)
				}
			})
		}
		wg.Wait()
	}
}

// writeFailed counts and logs (at most every presenceWarnEvery) a write
// that failed; the group is written again at the next flush.
func (p *presence) writeFailed(key groupKey, entry [][]byte, err error) {
	p.writeErrors.Add(1)
	p.mu.Lock()
	if entry != nil {
		if pg := p.groups[key]; pg != nil {
			pg.dirty = true
		}
	}
	warn := time.Since(p.warned) >= presenceWarnEvery
	if warn {
		p.warned = time.Now()
	}
	p.mu.Unlock()
	if warn {
		p.g.log.Warn("presence entry not written: other gateways may not see this gateway's members; trying again", "stream", key.stream, "group", key.group, "chunks", len(entry), "failures", p.writeErrors.Load(), "error", err)
	}
}

// presenceWarnEvery rate-limits the warnings of failed writes.
const presenceWarnEvery = 10 * time.Second

// close stops the flusher, the watches and the grace timers. This
// gateway's entries stay in the store until they expire (the TTL): its
// clients that reconnect to another gateway meanwhile fire no leave.
func (p *presence) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	var cancels []func()
	for _, pg := range p.groups {
		for _, m := range pg.local {
			for _, slot := range m.pending {
				slot.t.Stop()
			}
		}
		if pg.cancel != nil {
			cancels = append(cancels, pg.cancel)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	for _, c := range cancels {
		c()
	}
}

// page is a page request's answer for s; ok false while s is no synced
// presence subscriber (its join not yet allowed, or denied, or left).
func (p *presence) page(s *subscription, after string, limit int) (frame []byte, ok bool) {
	if !s.presenceSynced.Load() {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pg := p.groups[groupKey{s.stream, s.group}]
	if pg == nil || !pg.subs[s] {
		return nil, false
	}
	ms := pg.members()
	page, more := wire.PageMembers(ms, after, limit)
	return wire.PresencePage(page, len(ms), more), true
}

// ErrPresenceUnavailable reports that presence is not shared (no store)
// and this gateway watches no such group.
var ErrPresenceUnavailable = errors.New("gateway: presence of other gateways unavailable")

// Members returns a group's presence members in identity order, across
// gateways: from this gateway's view when it watches the group, else from
// the store (or this gateway's own members when there is none).
func (g *Gateway) Members(ctx context.Context, stream, group string) ([]wire.Member, error) {
	p := g.presence
	p.mu.Lock()
	if pg := p.groups[groupKey{stream, group}]; pg != nil && (pg.ready || p.store == nil) {
		ms := pg.members()
		p.mu.Unlock()
		return ms, nil
	}
	p.mu.Unlock()
	if p.store == nil {
		return []wire.Member{}, nil
	}
	raw, err := p.store.Entries(ctx, stream, group)
	if err != nil {
		return nil, err
	}
	entries := make([]wire.PresenceEntry, 0, len(raw))
	for _, b := range raw {
		var e wire.PresenceEntry
		if json.Unmarshal(b, &e) == nil {
			entries = append(entries, e)
		}
	}
	return wire.MergeEntries(entries), nil
}
