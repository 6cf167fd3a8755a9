// Package jsstore keeps stream items in NATS JetStream, so that several
// engines share one state. One JetStream stream (at most one message per
// subject) holds, for every group:
//
//   - a head subject, whose message is the group's last committed change,
//     whole (operation, item, value) with the group's sequence: writing it
//     is the commit, a compare-and-set on the head subject alone, so one
//     writer at a time across engines moves a group's sequence on, at a
//     cost that does not grow with the number of items;
//   - one subject per item, whose message is the item's value or a
//     tombstone. A committed change is applied there once the head moves
//     on to another item: that writer, of any engine, applies the head's
//     change before it commits its own, and readers take the head's change
//     over an older item message. Repeated writes of one item cost one
//     publish each.
//
// Items are read from the stream's leader, never from a replica that may
// lag, so a writer cannot compute a value from an item older than the head
// it replaces, and a value acknowledged through one engine is read back
// through any other. docs/streams.md gives the reasoning.
//
// Concurrency: a Store is safe for concurrent use. The writers of a group
// on one engine are committed together, in the order they came, by one
// atomic batch (groupcommit.go), and the engines are serialized through
// JetStream's expected-sequence check on the group's head. It starts no
// goroutines of its own beyond the NATS client's: a writer leads its
// group's commit. Close releases what it holds.
package jsstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/subject"
	"github.com/trinehq/trine/streammodule/store"
)

// Config configures the JetStream stream.
type Config struct {
	// Stream names the JetStream stream. Default "TRINE_STREAMS".
	Stream string
	// Prefix starts every subject. Default "trine.kv".
	Prefix string
	// Replicas is the stream's replication factor. Default 1.
	Replicas int
	// MaxRetries bounds the compare-and-set retries of one write under
	// contention from other engines. Default 1000.
	MaxRetries int
	// MaxBatchWrites bounds the writes of one group committed together.
	// Default 256; at most MaxBatchWritesLimit.
	MaxBatchWrites int
	// MaxBatchBytes bounds the bytes (values, names and about 256 of
	// headers per write) of one group commit; a write larger than it goes
	// alone. Default 1 MiB.
	MaxBatchBytes int
	// BatchWait bounds how long the leader of a hot group's next commit
	// waits for the writers of its last batch to queue again (also at
	// most half the last commit's round trip). Default DefaultBatchWait;
	// negative: it never waits.
	BatchWait time.Duration
}

// Defaults and bounds of the group commit.
const (
	DefaultMaxBatchWrites = 256
	DefaultMaxBatchBytes  = 1 << 20
	DefaultBatchWait      = 2 * time.Millisecond
	// MaxBatchWritesLimit keeps a batch (a message per write, the old
	// head's change and the head) within JetStream's default of 1,000
	// messages per atomic batch.
	MaxBatchWritesLimit = maxAtomicBatch - 2
)

// Headers of the store's messages.
const (
	hSeq = "Trine-Seq" // the group's sequence after the change
	hOp  = "Trine-Op"  // put, del or emit
	// The names a message's subject encodes, base64url without padding:
	// subject tokens of long names are hashed (subject.Token), so the
	// names themselves are kept here, to list them and to check them.
	hStream = "Trine-Stream"
	hGroup  = "Trine-Group"
	hItem   = "Trine-Item" // on a head: the item its change is for
)

// Operations of a change.
const (
	opPut  = "put"
	opDel  = "del"
	opEmit = "emit"
)

// requestTimeout bounds a leader read whose context has no deadline.
const requestTimeout = 5 * time.Second

// Store is a store.Store on JetStream.
type Store struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	st     jetstream.Stream
	cfg    Config
	opts   store.Options
	closed atomic.Bool
	batch  *batcher
	atomic atomic.Bool // the stream takes atomic batches
	// minAtomicWrites: on one replica, fewer writes than this are not
	// worth an atomic batch.
	minAtomicWrites int

	msgGetSubject string // the stream's MSG.GET API subject (leader reads)
}

// Open creates (or updates) the stream and returns the store.
func Open(ctx context.Context, nc *nats.Conn, cfg Config, opts store.Options) (*Store, error) {
	if cfg.Stream == "" {
		cfg.Stream = "TRINE_STREAMS"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "trine.kv"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 1000
	}
	if cfg.MaxBatchWrites <= 0 {
		cfg.MaxBatchWrites = DefaultMaxBatchWrites
	}
	cfg.MaxBatchWrites = min(cfg.MaxBatchWrites, MaxBatchWritesLimit)
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = DefaultBatchWait
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jsstore: %w", err)
	}
	st, err := jsboot.CreateOrUpdateStream(ctx, js, jetstream.StreamConfig{
		Name:              cfg.Stream,
		Subjects:          []string{cfg.Prefix + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgsPerSubject: 1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardOld,
		// A group commit is one atomic batch (NATS 2.12 and later).
		AllowAtomicPublish: true,
	})
	if err != nil {
		return nil, fmt.Errorf("jsstore: %w", err)
	}
	s := &Store{
		nc: nc, js: js, st: st, cfg: cfg, opts: opts, batch: newBatcher(), minAtomicWrites: minAtomicWritesR1,
		msgGetSubject: "$JS.API.STREAM.MSG.GET." + cfg.Stream,
	}
	// An older server ignores the setting: then a batch is one message.
	s.atomic.Store(st.CachedInfo().Config.AllowAtomicPublish)
	return s, nil
}

func (s *Store) group(stream, group string) string {
	return s.cfg.Prefix + "." + subject.Token(stream) + "." + subject.Token(group)
}

// headSubject holds the group's head: its last message carries the
// group's sequence. Reading it costs the same however many items the group
// holds.
func (s *Store) headSubject(stream, group string) string {
	return s.group(stream, group) + ".h"
}

func (s *Store) itemSubject(k store.Key) string {
	return s.group(k.Stream, k.Group) + ".i." + subject.Token(k.Item)
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// Reads come in two kinds. A direct get may be answered by any replica,
// a follower that lags included; the write path starts with one, because
// its compare-and-set refuses a stale read and the retry then asks the
// leader. A leader read (the stream's MSG.GET API) sees every write that
// has been acknowledged; Get, List and the listings use it, so that a
// value written through one engine is read back through any other.
type readMode bool

const (
	direct readMode = false
	leader readMode = true
)

// msg is one stored message as the store needs it.
type msg struct {
	seq  uint64 // stream sequence
	hdr  nats.Header
	data []byte
}

// last reads the last message on subject; ok is false when there is none.
func (s *Store) last(ctx context.Context, subject string, mode readMode) (msg, bool, error) {
	if mode == direct {
		m, err := s.st.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return msg{}, false, nil
		}
		if err != nil {
			return msg{}, false, fmt.Errorf("jsstore: %w", err)
		}
		return msg{seq: m.Sequence, hdr: m.Header, data: m.Data}, true, nil
	}
	return s.leaderGet(ctx, subject)
}

type msgGetRequest struct {
	LastBySubject string `json:"last_by_subj"`
}

type msgGetResponse struct {
	Message *struct {
		Seq  uint64 `json:"seq"`
		Hdrs []byte `json:"hdrs"`
		Data []byte `json:"data"`
	} `json:"message"`
	Error *jetstream.APIError `json:"error"`
}

// errNoMessage is JetStream's "no message found".
const errNoMessage jetstream.ErrorCode = 10037

func (s *Store) leaderGet(ctx context.Context, subject string) (msg, bool, error) {
	req, _ := json.Marshal(msgGetRequest{LastBySubject: subject})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	r, err := s.nc.RequestWithContext(ctx, s.msgGetSubject, req)
	if err != nil {
		return msg{}, false, fmt.Errorf("jsstore: read %s: %w", subject, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(r.Data, &resp); err != nil {
		return msg{}, false, fmt.Errorf("jsstore: read %s: %w", subject, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == errNoMessage {
			return msg{}, false, nil
		}
		return msg{}, false, fmt.Errorf("jsstore: read %s: %w", subject, resp.Error)
	}
	if resp.Message == nil {
		return msg{}, false, fmt.Errorf("jsstore: read %s: empty answer", subject)
	}
	m := msg{seq: resp.Message.Seq, data: resp.Message.Data}
	if len(resp.Message.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs)
		if err != nil {
			return msg{}, false, fmt.Errorf("jsstore: read %s: %w", subject, err)
		}
		m.hdr = h
	}
	return m, true, nil
}

// head is a group's last committed change, as its head message holds it.
type head struct {
	seq       uint64 // the group's sequence: the change's (0: never written)
	streamSeq uint64 // the head message's stream sequence (0: none)
	op        string // put, del or emit; "" when there is no change to apply
	item      string // the item a put or del changed
	value     []byte // the put's value
}

// pending reports whether the head's change may not be on its item's
// subject yet.
func (h head) pending() bool { return h.op == opPut || h.op == opDel }

// itemValue is the item as the head's change left it.
func (h head) itemValue() store.Item {
	if h.op == opDel {
		return store.Item{}
	}
	return store.Item{Value: h.value, Seq: h.seq}
}

// readHead reads the group's head.
func (s *Store) readHead(ctx context.Context, stream, group string, mode readMode) (head, error) {
	m, ok, err := s.last(ctx, s.headSubject(stream, group), mode)
	if err != nil {
		return head{}, err
	}
	if !ok {
		// A group written before head subjects existed keeps its sequence
		// on its last message, and every change of it is applied. The
		// first head message's compare-and-set (on "no head yet") still
		// admits one writer only.
		if m, ok, err = s.last(ctx, s.group(stream, group)+".i.>", mode); err != nil || !ok {
			return head{}, err
		}
		seq, err := groupSeq(m)
		return head{seq: seq}, err
	}
	if err := checkNames(m, store.Key{Stream: stream, Group: group}, true); err != nil {
		return head{}, err
	}
	seq, err := groupSeq(m)
	if err != nil {
		return head{}, err
	}
	h := head{seq: seq, streamSeq: m.seq, op: m.hdr.Get(hOp)}
	if h.pending() {
		if h.item, err = itemName(m.hdr); err != nil {
			return head{}, fmt.Errorf("jsstore: head message %d: %w", m.seq, err)
		}
		h.value = m.data
	}
	return h, nil
}

func groupSeq(m msg) (uint64, error) {
	seq, err := strconv.ParseUint(m.hdr.Get(hSeq), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("jsstore: message %d has no %s", m.seq, hSeq)
	}
	return seq, nil
}

// b64 is the encoding of names in headers.
var b64 = base64.RawURLEncoding

// setNames writes the names of k on m.
func setNames(m *nats.Msg, k store.Key) {
	m.Header.Set(hStream, b64.EncodeToString([]byte(k.Stream)))
	m.Header.Set(hGroup, b64.EncodeToString([]byte(k.Group)))
	m.Header.Set(hItem, b64.EncodeToString([]byte(k.Item)))
}

// names decodes the names a message carries; ok is false for a message
// written before they were (whose subject tokens are never hashed).
func names(h nats.Header) (k store.Key, ok bool, err error) {
	if h.Get(hStream) == "" && h.Get(hGroup) == "" {
		return store.Key{}, false, nil
	}
	for _, f := range []struct {
		hdr string
		dst *string
	}{{hStream, &k.Stream}, {hGroup, &k.Group}, {hItem, &k.Item}} {
		b, err := b64.DecodeString(h.Get(f.hdr))
		if err != nil {
			return store.Key{}, false, fmt.Errorf("bad %s header", f.hdr)
		}
		*f.dst = string(b)
	}
	return k, true, nil
}

// itemName decodes the item id a head message names.
func itemName(h nats.Header) (string, error) {
	b, err := b64.DecodeString(h.Get(hItem))
	if err != nil {
		return "", fmt.Errorf("bad %s header", hItem)
	}
	return string(b), nil
}

// checkNames fails when a message on k's subject is another key's: two
// long names whose hashed tokens collide.
func checkNames(m msg, k store.Key, head bool) error {
	got, ok, err := names(m.hdr)
	if err != nil || !ok {
		return err
	}
	if head {
		got.Item, k.Item = "", ""
	}
	if got != k {
		return fmt.Errorf("jsstore: message %d of %q/%q/%q belongs to %q/%q/%q: subject tokens collide", m.seq, k.Stream, k.Group, k.Item, got.Stream, got.Group, got.Item)
	}
	return nil
}

// itemSubj reads an item's own subject: the item (Seq 0 when missing or
// deleted) and the stream sequence of the subject's last message (0: none),
// for the compare-and-set of the next message there.
func (s *Store) itemSubj(ctx context.Context, k store.Key) (it store.Item, streamSeq uint64, err error) {
	m, ok, err := s.last(ctx, s.itemSubject(k), leader)
	if err != nil || !ok {
		return store.Item{}, 0, err
	}
	if err := checkNames(m, k, false); err != nil {
		return store.Item{}, 0, err
	}
	seq, err := groupSeq(m)
	if err != nil {
		return store.Item{}, 0, err
	}
	if m.hdr.Get(hOp) != opPut {
		return store.Item{Seq: seq}, m.seq, nil // a tombstone keeps its seq, to tell it from an older put
	}
	return store.Item{Value: m.data, Seq: seq}, m.seq, nil
}

// current is an item as of head h: its own subject, unless h's change to
// it is newer.
func (s *Store) current(ctx context.Context, k store.Key, h head) (store.Item, error) {
	it, _, err := s.itemSubj(ctx, k)
	if err != nil {
		return store.Item{}, err
	}
	if h.pending() && h.item == k.Item && h.seq > it.Seq {
		it = h.itemValue()
	}
	if it.Value == nil {
		it.Seq = 0 // deleted or never written
	}
	it.ID = k.Item
	return it, nil
}

// settle puts head h's change on its item's subject, unless it is there
// already. Every writer settles the head before it writes a new one, so at
// most the head's own change is ever missing from the item subjects.
// Losing the apply's compare-and-set is not taken as proof: a late apply
// of an older change of the item may have won it, so settle reads again
// until the item holds h's change or a newer one.
func (s *Store) settle(ctx context.Context, stream, group string, h head) error {
	if !h.pending() {
		return nil
	}
	k := store.Key{Stream: stream, Group: group, Item: h.item}
	for attempt := range s.cfg.MaxRetries {
		it, streamSeq, err := s.itemSubj(ctx, k)
		if err != nil || it.Seq >= h.seq {
			return err
		}
		if attempt > 0 { // an apply is in flight on the subject
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(min(attempt, 20)) * time.Millisecond):
			}
		}
		if err := s.apply(ctx, k, h.op, h.seq, h.value, streamSeq); err != nil && !conflict(err) {
			return fmt.Errorf("jsstore: %w", err)
		}
	}
	return fmt.Errorf("jsstore: item %q of %q/%q: could not apply sequence %d", k.Item, stream, group, h.seq)
}

// apply writes a committed change on its item's subject, a
// compare-and-set on the message it read there (streamSeq).
func (s *Store) apply(ctx context.Context, k store.Key, op string, seq uint64, value []byte, streamSeq uint64) error {
	m := s.itemMsg(k, op, seq, value)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(streamSeq, 10))
	_, err := s.js.PublishMsg(ctx, m)
	return err
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, k store.Key) (store.Item, uint64, error) {
	if err := s.check(ctx); err != nil {
		return store.Item{}, 0, err
	}
	h, err := s.readHead(ctx, k.Stream, k.Group, leader)
	if err != nil {
		return store.Item{}, 0, err
	}
	it, err := s.current(ctx, k, h)
	return it, h.seq, err
}

// A change to commit: decide sees the item as of the writes before it
// and returns what to write, or nothing.
type change struct {
	op    string
	value []byte
	skip  bool         // nothing to write (a delete of a missing item)
	ch    store.Change // for OnCommit, but its Seq and Time
}

// errWrongLastSequenceConstant is the code of a compare-and-set on a
// subject that another write has in flight (clustered streams).
const errWrongLastSequenceConstant jetstream.ErrorCode = 10164

// conflict reports a failed compare-and-set.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == errWrongLastSequenceConstant)
}

func (s *Store) commit(ch store.Change) {
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(ch)
	}
}

func (s *Store) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// Put implements store.Store. m may run more than once.
func (s *Store) Put(ctx context.Context, k store.Key, c store.Cond, m store.Mutator) (store.Change, error) {
	if err := s.check(ctx); err != nil {
		return store.Change{}, err
	}
	o := &op{ctx: ctx, key: k, decide: func(old store.Item) (change, error) {
		if c.IfSeq != nil && *c.IfSeq != old.Seq {
			return change{}, store.ErrConflict
		}
		value, err := m(old.Value, old.Seq != 0)
		if err != nil {
			return change{}, err
		}
		ch := store.Change{Key: k, Kind: store.KindUpdate, Old: old.Value, Value: value, Ctx: ctx}
		if old.Seq == 0 {
			ch.Kind, ch.Old = store.KindCreate, nil
		}
		return change{op: opPut, value: value, ch: ch}, nil
	}}
	s.submit(o)
	return o.ch, o.err
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, k store.Key, c store.Cond) (store.Change, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Change{}, false, err
	}
	o := &op{ctx: ctx, key: k, decide: func(old store.Item) (change, error) {
		if c.IfSeq != nil && *c.IfSeq != old.Seq {
			return change{}, store.ErrConflict
		}
		ch := store.Change{Key: k, Kind: store.KindDelete, Old: old.Value, Value: old.Value, Ctx: ctx}
		return change{op: opDel, skip: old.Seq == 0, ch: ch}, nil
	}}
	s.submit(o)
	return o.ch, o.ok, o.err
}

// Emit implements store.Store: the change is the group's head and is
// applied to no item; it advances the group's sequence and stores nothing.
func (s *Store) Emit(ctx context.Context, c store.Change) (store.Change, error) {
	if err := s.check(ctx); err != nil {
		return store.Change{}, err
	}
	o := &op{ctx: ctx, key: store.Key{Stream: c.Stream, Group: c.Group}, decide: func(store.Item) (change, error) {
		ch := store.Change{Key: c.Key, Kind: c.Kind, Old: c.Old, Value: c.Value, EventType: c.EventType, Ctx: ctx}
		return change{op: opEmit, value: c.Value, ch: ch}, nil
	}}
	s.submit(o)
	return o.ch, o.err
}

// subjects lists the stream's subjects matching filter.
func (s *Store) subjects(ctx context.Context, filter string) ([]string, error) {
	info, err := s.st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("jsstore: %w", err)
	}
	out := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		out = append(out, subj)
	}
	return out, nil
}

// List implements store.Store. The group's head is read first, so an item
// written meanwhile may show its newer value: a subscriber then sees that
// change once more, never misses it.
func (s *Store) List(ctx context.Context, stream, group string, r store.Range) (store.Page, error) {
	if err := s.check(ctx); err != nil {
		return store.Page{}, err
	}
	h, err := s.readHead(ctx, stream, group, leader)
	if err != nil {
		return store.Page{}, err
	}
	prefix := s.group(stream, group) + ".i."
	subjects, err := s.subjects(ctx, prefix+"*")
	if err != nil {
		return store.Page{}, err
	}
	ids := make([]string, 0, len(subjects)+1)
	for _, subj := range subjects {
		k, ok, err := s.subjectKey(ctx, subj)
		if err != nil {
			return store.Page{}, err
		}
		if ok && k.Stream == stream && k.Group == group {
			ids = append(ids, k.Item)
		}
	}
	if h.op == opPut && !slices.Contains(ids, h.item) {
		ids = append(ids, h.item) // created by the head, not applied yet
	}
	slices.Sort(ids)
	p := store.Page{Items: []store.Item{}, Seq: h.seq}
	size := 0
	for _, id := range ids {
		if r.After != "" && id <= r.After {
			continue
		}
		it, err := s.current(ctx, store.Key{Stream: stream, Group: group, Item: id}, h)
		if err != nil {
			return store.Page{}, err
		}
		if it.Seq == 0 {
			continue // deleted
		}
		ok, n := r.Take(len(p.Items), size, it)
		if !ok {
			p.More = true
			break
		}
		p.Items, size = append(p.Items, it), n
	}
	return p, nil
}

// subjectKey gives the names of an item or head subject: from its tokens,
// or, when one is hashed, from the headers of its last message. ok is
// false for a subject that is neither.
func (s *Store) subjectKey(ctx context.Context, subj string) (store.Key, bool, error) {
	toks := strings.Split(strings.TrimPrefix(subj, s.cfg.Prefix+"."), ".")
	item := len(toks) == 4 && toks[2] == "i"
	if !item && (len(toks) != 3 || toks[2] != "h") {
		return store.Key{}, false, nil
	}
	var k store.Key
	var errs [3]error
	k.Stream, errs[0] = subject.ParseToken(toks[0])
	k.Group, errs[1] = subject.ParseToken(toks[1])
	if item {
		k.Item, errs[2] = subject.ParseToken(toks[3])
	}
	if errs[0] == nil && errs[1] == nil && errs[2] == nil {
		return k, true, nil
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, subject.ErrHashedToken) {
			return store.Key{}, false, nil // not a subject this store wrote
		}
	}
	m, ok, err := s.last(ctx, subj, leader)
	if err != nil || !ok {
		return store.Key{}, false, err
	}
	k, ok, err = names(m.hdr)
	if err != nil {
		return store.Key{}, false, fmt.Errorf("jsstore: %s: %w", subj, err)
	}
	if !item {
		k.Item = ""
	}
	return k, ok, nil
}

// groupsWithItems maps stream → groups that hold at least one item, among
// the groups whose subjects match streamTok (a token or "*").
func (s *Store) groupsWithItems(ctx context.Context, streamTok string) (map[string][]string, error) {
	base := s.cfg.Prefix + "." + streamTok + ".*."
	items, err := s.subjects(ctx, base+"i.*")
	if err != nil {
		return nil, err
	}
	heads, err := s.subjects(ctx, base+"h")
	if err != nil {
		return nil, err
	}
	type group struct{ stream, group string }
	byGroup := map[group][]string{} // item ids
	for i, subj := range append(items, heads...) {
		k, ok, err := s.subjectKey(ctx, subj)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		g := group{k.Stream, k.Group}
		if i < len(items) {
			byGroup[g] = append(byGroup[g], k.Item)
		} else if _, ok := byGroup[g]; !ok {
			byGroup[g] = nil
		}
	}
	out := map[string][]string{}
	for g, ids := range byGroup {
		h, err := s.readHead(ctx, g.stream, g.group, leader)
		if err != nil {
			return nil, err
		}
		live := h.op == opPut
		for _, id := range ids {
			if live {
				break
			}
			it, err := s.current(ctx, store.Key{Stream: g.stream, Group: g.group, Item: id}, h)
			if err != nil {
				return nil, err
			}
			live = it.Seq != 0
		}
		if live {
			out[g.stream] = append(out[g.stream], g.group)
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out, nil
}

// ListGroups implements store.Store.
func (s *Store) ListGroups(ctx context.Context, stream string) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	gs, err := s.groupsWithItems(ctx, subject.Token(stream))
	if err != nil {
		return nil, err
	}
	if g := gs[stream]; g != nil {
		return g, nil
	}
	return []string{}, nil
}

// ListAll implements store.Store.
func (s *Store) ListAll(ctx context.Context) ([]store.StreamGroups, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	gs, err := s.groupsWithItems(ctx, "*")
	if err != nil {
		return nil, err
	}
	out := []store.StreamGroups{}
	for stream, groups := range gs {
		out = append(out, store.StreamGroups{ID: stream, Groups: groups})
	}
	slices.SortFunc(out, func(a, b store.StreamGroups) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Close implements store.Store; the NATS connection stays the caller's.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// Watch calls fn with the key of every message any engine writes to the
// store from now on (heads and items alike, so a key may come more than
// once), in stream order, until stop is called; stop waits for fn to
// return. It reads through an ordered consumer, which JetStream resumes
// after the last message delivered when the connection comes back, so no
// change is missed.
func (s *Store) Watch(ctx context.Context, fn func(store.Key)) (stop func(), err error) {
	info, err := s.st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("jsstore: watch: %w", err)
	}
	cons, err := s.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.cfg.Prefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("jsstore: watch: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if k, ok, err := names(m.Headers()); ok && err == nil {
			fn(k)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("jsstore: watch: %w", err)
	}
	return func() {
		cc.Stop()
		<-cc.Closed()
	}, nil
}
