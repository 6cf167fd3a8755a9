package jsstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/trinehq/trine/streammodule/store"
)

// Group commit. The writers of one group on an engine queue up; the first
// of them leads: it takes the queue's writes (up to MaxBatchWrites, and
// MaxBatchBytes of values and names), decides each one in turn against
// the group as the writes before it left it, and commits all of them with
// one JetStream atomic batch: a message per item the batch changed, then
// the new head, which carries the batch's last change and the
// compare-and-set on the head subject. The server stores all of the
// batch's messages or none, so the group's sequence moves from n to n+k
// at once, in the order the writes were queued.
//
// A write refused by its own condition (if_seq, a mutator's error, a
// delete of a missing item) takes no sequence and leaves the others be.
// If the compare-and-set fails (another engine wrote first), every write
// of the batch is decided again on a fresh read, so a refusal is only
// ever reported against the state the batch committed on. Nothing is
// acknowledged before the batch's ack, which JetStream sends once the
// batch is stored (on every replica's quorum, for a replicated stream).
// Then the leader passes the lead to the next writer waiting.
//
// A hot group's writers are mostly the same ones writing again as soon
// as they are acknowledged. A leader that took the queue at once would
// find only the writers that queued during the last round trip, and the
// writers it just acknowledged would queue behind it for the next one:
// batches would alternate between the two halves, each carrying half the
// writers. So the leader first waits, briefly, for the writers of the
// group's last batch to queue again (gather).
//
// The leader remembers, per group, the head and the items it committed,
// so that the next batch of a hot group reads nothing: the head's
// compare-and-set proves that no other engine wrote in between. That
// memory is bounded by MaxBatchBytes × cacheBatches for all groups.

// cacheBatches: the groups' remembered heads and items hold at most this
// many MaxBatchBytes together.
const cacheBatches = 4

// minAtomicWritesR1: on a one-replica stream, a batch of fewer queued
// writes than this is committed one message at a time.
const minAtomicWritesR1 = 8

// maxAtomicBatch is JetStream's default bound on the messages of one
// atomic batch.
const maxAtomicBatch = 1000

// JetStream error codes of atomic batches.
const (
	errAtomicDisabled    jetstream.ErrorCode = 10174 // the stream does not allow atomic publish
	errAtomicTooMany     jetstream.ErrorCode = 10210 // too many batches in flight on the stream
	errAtomicIncomplete  jetstream.ErrorCode = 10176 // a message of the batch did not arrive
	headerOverheadBytes                      = 256   // the headers of one message, roughly
	maxConcurrentBatches                     = 16    // atomic batches in flight per store (JetStream allows 50 per stream)
)

// gkey names a group.
type gkey struct{ stream, group string }

// op is one write waiting for its group's commit.
type op struct {
	ctx    context.Context
	key    store.Key
	decide func(old store.Item) (change, error)

	// Set by the leader before wake.
	ch   store.Change
	ok   bool // a change was committed
	err  error
	lead bool // the write's goroutine now leads the group's commits

	wake chan struct{} // done, or lead
}

// queue is a group's writers on this engine.
type queue struct {
	ops     []*op
	busy    bool          // a leader is committing
	waiting bool          // the leader is gathering: a write signals grew
	grew    chan struct{} // made when first gathering
}

// known is what this engine last committed to a group: its head and the
// items as that head left them (Seq 0: missing). Valid as long as the head
// is the group's, which the next commit's compare-and-set checks.
type known struct {
	h     head
	items map[string]store.Item // only the group's leader reads and changes them
	bytes int                   // of items

	// The group's last batch: the writes it took and its commit's round
	// trip, what gather waits for.
	lastWrites int
	lastRTT    time.Duration
}

// batcher holds the groups' queues and what the engine knows of them.
type batcher struct {
	mu      sync.Mutex
	queues  map[gkey]*queue
	known   map[gkey]*known
	bytes   int           // of known
	batches chan struct{} // atomic batches in flight
}

func newBatcher() *batcher {
	return &batcher{queues: map[gkey]*queue{}, known: map[gkey]*known{}, batches: make(chan struct{}, maxConcurrentBatches)}
}

// submit queues o on its group and returns once it is committed or
// refused, leading the group's commits when its turn comes.
func (s *Store) submit(o *op) {
	b := s.batch
	g := gkey{o.key.Stream, o.key.Group}
	o.wake = make(chan struct{}, 1)
	b.mu.Lock()
	q := b.queues[g]
	if q == nil {
		q = &queue{}
		b.queues[g] = q
	}
	q.ops = append(q.ops, o)
	lead := !q.busy
	o.lead = lead
	q.busy = true
	if q.waiting {
		select {
		case q.grew <- struct{}{}:
		default:
		}
	}
	b.mu.Unlock()
	if !lead {
		select {
		case <-o.wake:
		case <-o.ctx.Done():
			b.mu.Lock()
			if i := slices.Index(q.ops, o); i >= 0 && !o.lead {
				q.ops = slices.Delete(q.ops, i, i+1) // never taken: nothing written
				b.mu.Unlock()
				o.err = o.ctx.Err()
				return
			}
			b.mu.Unlock()
			<-o.wake // in a batch in flight, or leading
		}
		if !o.lead {
			return
		}
	}
	s.lead(g, q, !lead)
}

// lead commits one batch of g's queue, which starts with the leader's own
// write, then passes the lead on. passed: the lead came from the last
// batch's leader, rather than to a write finding the group idle.
func (s *Store) lead(g gkey, q *queue, passed bool) {
	b := s.batch
	b.mu.Lock()
	s.gather(g, q, passed)
	n := min(len(q.ops), s.cfg.MaxBatchWrites)
	ops := slices.Clone(q.ops[:n])
	q.ops = slices.Delete(q.ops, 0, n)
	b.mu.Unlock()

	done := s.commitBatch(g, ops)

	b.mu.Lock()
	q.ops = append(ops[done:len(ops):len(ops)], q.ops...) // split: the rest go first next time
	var next *op
	if len(q.ops) > 0 {
		next = q.ops[0]
		next.lead = true
	} else {
		q.busy = false
		delete(b.queues, g)
	}
	b.mu.Unlock()
	for _, o := range ops[:done] {
		if !o.lead {
			o.wake <- struct{}{}
		}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
}

// gather waits, with b.mu held (released while waiting), for the writers
// of g's last batch to queue again: up to the last batch's writes more
// than the queue held when the lead was passed (a write finding the group
// idle is itself one of them), for at most BatchWait and half the last
// commit's round trip. Without a remembered last batch of several
// writes, it does not wait.
func (s *Store) gather(g gkey, q *queue, passed bool) {
	b := s.batch
	k := b.known[g]
	if k == nil || k.lastWrites < 2 || s.cfg.BatchWait <= 0 {
		return
	}
	want := k.lastWrites
	if passed {
		want += len(q.ops)
	}
	want = min(want, s.cfg.MaxBatchWrites)
	if len(q.ops) >= want {
		return
	}
	wait := min(s.cfg.BatchWait, k.lastRTT/2)
	if wait <= 0 {
		return
	}
	if q.grew == nil {
		q.grew = make(chan struct{}, 1)
	}
	q.waiting = true
	t := time.NewTimer(wait)
	defer t.Stop()
	for len(q.ops) < want {
		b.mu.Unlock()
		select {
		case <-q.grew:
			b.mu.Lock()
			continue
		case <-t.C:
			b.mu.Lock()
		}
		break
	}
	q.waiting = false
}

// batchCtx is the context of a batch's reads and publish: its writers'
// latest deadline, not cancelled with the leader's own call.
func batchCtx(ops []*op) (context.Context, context.CancelFunc) {
	var last time.Time
	for _, o := range ops {
		d, ok := o.ctx.Deadline()
		if !ok {
			return context.WithoutCancel(ops[0].ctx), func() {}
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(ops[0].ctx), last)
}

// commitBatch commits ops (at least the first) and sets each one's result;
// it returns how many it handled, the rest being over a bound.
func (s *Store) commitBatch(g gkey, ops []*op) int {
	ctx, cancel := batchCtx(ops)
	defer cancel()
	var (
		n   int
		err error
	)
	for attempt := range s.cfg.MaxRetries {
		if attempt > 2 { // contended: let the other engines through
			wait := time.Duration(rand.Int64N(int64(min(attempt, 50)) * int64(time.Millisecond)))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		var retry bool
		n, retry, err = s.tryBatch(ctx, g, ops, attempt)
		if !retry {
			break
		}
		err = fmt.Errorf("jsstore: group %q/%q: gave up after %d conflicting writes", g.stream, g.group, s.cfg.MaxRetries)
	}
	if err != nil {
		for _, o := range ops[:max(n, 1)] {
			o.ch, o.ok, o.err = store.Change{}, false, err
		}
		return max(n, 1)
	}
	return n
}

// batchState is a batch being decided: the group as its writes so far
// leave it.
type batchState struct {
	s     *Store
	ctx   context.Context
	g     gkey
	h     head
	known *known                // nil: nothing remembered
	items map[string]store.Item // read or changed by this batch
	seqs  map[string]uint64     // the batch's last change of each item it changed
	dirty []string              // items the batch changed, in order of first change
}

// item is the item as the batch's writes so far leave it.
func (st *batchState) item(id string) (store.Item, error) {
	if it, ok := st.items[id]; ok {
		return it, nil
	}
	it, ok := store.Item{}, false
	if st.h.pending() && st.h.item == id {
		it, ok = st.h.itemValue(), true // the head is the item's last change
	} else if st.known != nil {
		it, ok = st.known.items[id]
	}
	if !ok {
		var err error
		if it, err = st.s.current(st.ctx, store.Key{Stream: st.g.stream, Group: st.g.group, Item: id}, st.h); err != nil {
			return store.Item{}, err
		}
	}
	if it.Value == nil {
		it.Seq = 0
	}
	it.ID = id
	st.items[id] = it
	return it, nil
}

// write is a decided write of a batch.
type write struct {
	o *op
	c change
}

// tryBatch decides ops against the group's head and commits what they
// write; n is how many of ops it handled. retry reports a lost
// compare-and-set: nothing was written.
func (s *Store) tryBatch(ctx context.Context, g gkey, ops []*op, attempt int) (n int, retry bool, err error) {
	st := &batchState{s: s, ctx: ctx, g: g, items: map[string]store.Item{}, seqs: map[string]uint64{}}
	if attempt == 0 {
		s.batch.mu.Lock()
		if k := s.batch.known[g]; k != nil {
			st.h, st.known = k.h, k
		}
		s.batch.mu.Unlock()
	}
	if st.known == nil {
		s.forget(g)
		mode := direct // a stale head fails the compare-and-set
		if attempt > 0 {
			mode = leader
		}
		if st.h, err = s.readHead(ctx, g.stream, g.group, mode); err != nil {
			return 1, false, err
		}
	}
	// On one replica, JetStream stages an atomic batch in a file store
	// of its own and syncs it to disk: worth it for a queue of writes,
	// not for a lone one.
	atomicOK := s.atomic.Load() && (s.cfg.Replicas > 1 || len(ops) >= s.minAtomicWrites)
	settled := !st.h.pending()

	var writes []write
	var bytes int
	refused := false
	for n = 0; n < len(ops); n++ {
		o := ops[n]
		o.ch, o.ok, o.err = store.Change{}, false, nil
		if err := o.ctx.Err(); err != nil {
			o.err = err
			continue
		}
		var old store.Item
		if o.key.Item != "" {
			if old, err = st.item(o.key.Item); err != nil {
				return max(n, 1), false, err
			}
		}
		c, err := o.decide(old)
		if err != nil || c.skip {
			o.err, refused = err, true
			continue
		}
		size := len(c.value) + len(o.key.Item) + headerOverheadBytes
		if len(writes) > 0 {
			if bytes+size > s.cfg.MaxBatchBytes {
				break // o and the rest go in the next batch
			}
			if !atomicOK && (o.key.Item == "" || o.key.Item != writes[0].o.key.Item) {
				break // one message per batch: the head
			}
		}
		if !atomicOK && !settled && o.key.Item != st.h.item {
			// Without atomic batches, the head's change is applied
			// before another change takes its place.
			if err := s.settle(ctx, g.stream, g.group, st.h); err != nil {
				return max(n, 1), false, err
			}
			settled = true
		}
		bytes += size
		if o.key.Item != "" {
			seq := st.h.seq + uint64(len(writes)) + 1
			if _, ok := st.seqs[o.key.Item]; !ok {
				st.dirty = append(st.dirty, o.key.Item)
			}
			st.seqs[o.key.Item] = seq
			it := store.Item{ID: o.key.Item}
			if c.op == opPut {
				it.Value, it.Seq = c.value, seq
			}
			st.items[o.key.Item] = it
		}
		writes = append(writes, write{o, c})
	}
	if len(writes) == 0 {
		if refused && attempt == 0 {
			// Refused against a remembered head, or a replica's:
			// check that it is still the group's.
			h, err := s.readHead(ctx, g.stream, g.group, leader)
			if err != nil {
				return n, false, err
			}
			if h.streamSeq != st.h.streamSeq {
				return n, true, nil
			}
		}
		return n, false, nil
	}

	newHead, msgs := s.batchMsgs(st, writes, atomicOK && !settled)
	sent := time.Now()
	ack, err := s.publishBatch(ctx, msgs)
	rtt := time.Since(sent)
	switch {
	case conflict(err) || isCode(err, errAtomicTooMany) || isCode(err, errAtomicIncomplete):
		s.forget(g)
		return n, true, nil
	case isCode(err, errAtomicDisabled):
		s.atomic.Store(false) // the stream's config was changed under us
		s.forget(g)
		return n, true, nil
	case errors.Is(err, nats.ErrMaxPayload):
		s.forget(g)
		return n, false, fmt.Errorf("jsstore: %w: %w", store.ErrTooLarge, err)
	case err != nil:
		s.forget(g)
		return n, false, fmt.Errorf("jsstore: %w", err)
	}
	newHead.streamSeq = ack
	s.remember(g, st, newHead, n, rtt)

	now := s.now()
	for i, w := range writes {
		ch := w.c.ch
		ch.Seq, ch.Time = st.h.seq+uint64(i)+1, now
		w.o.ch, w.o.ok = ch, true
		s.commit(ch)
	}
	return n, false, nil
}

// batchMsgs is what a batch publishes: each item it changed but the new
// head's, the old head's change when fold (a change no item subject may
// hold yet, of an item the batch left alone), then the new head, which
// carries the batch's last change and the compare-and-set.
func (s *Store) batchMsgs(st *batchState, writes []write, fold bool) (head, []*nats.Msg) {
	g := st.g
	last := writes[len(writes)-1]
	h := head{seq: st.h.seq + uint64(len(writes)), op: last.c.op}
	if last.o.key.Item != "" {
		h.item, h.value = last.o.key.Item, last.c.value
	}
	var msgs []*nats.Msg
	for _, id := range st.dirty {
		if id == h.item {
			continue
		}
		it, op := st.items[id], opPut
		if it.Value == nil {
			op = opDel
		}
		msgs = append(msgs, s.itemMsg(store.Key{Stream: g.stream, Group: g.group, Item: id}, op, st.seqs[id], it.Value))
	}
	if _, changed := st.seqs[st.h.item]; fold && !changed && st.h.item != h.item {
		msgs = append(msgs, s.itemMsg(store.Key{Stream: g.stream, Group: g.group, Item: st.h.item}, st.h.op, st.h.seq, st.h.value))
	}
	m := nats.NewMsg(s.headSubject(g.stream, g.group))
	m.Header.Set(hOp, h.op)
	m.Header.Set(hSeq, strconv.FormatUint(h.seq, 10))
	setNames(m, store.Key{Stream: g.stream, Group: g.group, Item: h.item})
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(st.h.streamSeq, 10))
	m.Data = h.value
	return h, append(msgs, m)
}

// itemMsg is a committed change on its item's subject.
func (s *Store) itemMsg(k store.Key, op string, seq uint64, value []byte) *nats.Msg {
	m := nats.NewMsg(s.itemSubject(k))
	setNames(m, k)
	m.Header.Set(hOp, op)
	m.Header.Set(hSeq, strconv.FormatUint(seq, 10))
	if op == opPut {
		m.Data = value
	}
	return m
}

// publishBatch publishes msgs as one atomic batch (one message: a plain
// publish) and returns the ack of the last, sent once all are stored.
func (s *Store) publishBatch(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) == 1 {
		return s.publish(ctx, msgs[0], true)
	}
	select {
	case s.batch.batches <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-s.batch.batches }()
	id := nuid.Next()
	for i, m := range msgs {
		m.Header.Set(hBatchID, id)
		m.Header.Set(hBatchSeq, strconv.Itoa(i+1))
		if i == len(msgs)-1 {
			m.Header.Set(hBatchCommit, "1")
			break
		}
		if err := s.nc.PublishMsg(m); err != nil {
			return 0, err
		}
	}
	// A retry of the commit alone could only be refused as incomplete.
	return s.publish(ctx, msgs[len(msgs)-1], false)
}

// publish sends m to the stream and returns the stream sequence JetStream
// stored it at. It reads the ack without reflection when it holds no
// error, the common case (a third of a write's CPU went to decoding it).
// retry: when no server answers (a leader election), try again as the
// JetStream client does.
func (s *Store) publish(ctx context.Context, m *nats.Msg, retry bool) (uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	r, err := s.nc.RequestMsgWithContext(ctx, m)
	if errors.Is(err, nats.ErrNoResponders) && retry {
		ack, err := s.js.PublishMsg(ctx, m)
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	}
	if err != nil {
		return 0, err
	}
	return pubAckSeq(r.Data)
}

// pubAckSeq is the stream sequence of a JetStream publish ack, or its
// error.
func pubAckSeq(ack []byte) (uint64, error) {
	if i := bytes.Index(ack, []byte(`"seq":`)); i >= 0 && !bytes.Contains(ack, []byte(`"error"`)) {
		digits := ack[i+len(`"seq":`):]
		n := 0
		for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
			n++
		}
		if seq, err := strconv.ParseUint(string(digits[:n]), 10, 64); err == nil {
			return seq, nil
		}
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
		Seq   uint64              `json:"seq"`
	}
	if err := json.Unmarshal(ack, &resp); err != nil {
		return 0, jetstream.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("nats: %w", resp.Error)
	}
	return 0, jetstream.ErrInvalidJSAck
}

// Headers of JetStream's atomic batches (ADR-50).
const (
	hBatchID     = "Nats-Batch-Id"
	hBatchSeq    = "Nats-Batch-Sequence"
	hBatchCommit = "Nats-Batch-Commit"
)

func isCode(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// forget drops what the engine knew of g.
func (s *Store) forget(g gkey) {
	b := s.batch
	b.mu.Lock()
	if k := b.known[g]; k != nil {
		b.bytes -= k.size()
		delete(b.known, g)
	}
	b.mu.Unlock()
}

// remember keeps g's new head h and the items of the batch st that made
// it, added to what was known when the batch started from it (so that a
// commit costs what its batch holds, not what the group does), within the
// cache's bound: past MaxBatchBytes the group's items are dropped, past
// the whole bound other groups go. The batch took writes and committed
// in rtt.
func (s *Store) remember(g gkey, st *batchState, h head, writes int, rtt time.Duration) {
	b := s.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.known[g]
	if k != nil {
		b.bytes -= k.size()
	}
	if k == nil || k != st.known { // not what the batch started from
		delete(b.known, g)
		k = &known{items: map[string]store.Item{}}
	}
	k.h, k.lastWrites, k.lastRTT = h, writes, rtt
	for id, it := range st.items {
		if old, ok := k.items[id]; ok {
			k.bytes -= itemBytes(id, old)
		}
		k.items[id] = it
		k.bytes += itemBytes(id, it)
	}
	if k.bytes > s.cfg.MaxBatchBytes {
		clear(k.items)
		k.bytes = 0
	}
	limit := cacheBatches * s.cfg.MaxBatchBytes
	if b.bytes+k.size() > limit {
		for other, ko := range b.known {
			if other == g {
				continue
			}
			b.bytes -= ko.size()
			delete(b.known, other)
			if b.bytes+k.size() <= limit {
				break
			}
		}
	}
	if b.bytes+k.size() <= limit {
		b.known[g] = k
		b.bytes += k.size()
	} else {
		delete(b.known, g)
	}
}

// itemBytes is what remembering an item costs, roughly.
func itemBytes(id string, it store.Item) int { return len(id) + len(it.Value) + 64 }

// size is what k holds: its items and its head.
func (k *known) size() int { return k.bytes + len(k.h.value) + len(k.h.item) + headerOverheadBytes }
