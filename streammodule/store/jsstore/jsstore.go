// Package jsstore keeps stream items in NATS JetStream, so that several
// engines share one state. One JetStream stream holds every item: an item
// is a subject whose last message is its value, a delete is a tombstone
// message, and every write is one publish that is a compare-and-set on the
// whole group (Nats-Expected-Last-Subject-Sequence on the group's subject
// wildcard), so sequences stay contiguous per group across engines and
// update operations stay atomic.
package jsstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/streammodule/natsfanout"
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
}

// Headers written on every message.
const (
	hSeq  = "Trine-Seq"  // the group's sequence after this write
	hOp   = "Trine-Op"   // put, del or emit
	hKind = "Trine-Kind" // emitted change: create, update, delete or event
	hType = "Trine-Type" // emitted event's type
	hItem = "Trine-Item" // emitted change's item id
)

// errWrongLastSequence is the code a clustered stream gives a failed
// compare-and-set (10071 is the single-server one).
const errWrongLastSequence jetstream.ErrorCode = 10164

// Store is a store.Store on JetStream.
type Store struct {
	js     jetstream.JetStream
	st     jetstream.Stream
	cfg    Config
	opts   store.Options
	closed atomic.Bool
	locks  [256]sync.Mutex // writers of a group on this engine take turns
	seed   maphash.Seed
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
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jsstore: %w", err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.Stream,
		Subjects:          []string{cfg.Prefix + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgsPerSubject: 1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("jsstore: stream %s: %w", cfg.Stream, err)
	}
	return &Store{js: js, st: st, cfg: cfg, opts: opts, seed: maphash.MakeSeed()}, nil
}

func (s *Store) group(stream, group string) string {
	return s.cfg.Prefix + "." + natsfanout.Token(stream) + "." + natsfanout.Token(group)
}

func (s *Store) itemSubject(k store.Key) string {
	return s.group(k.Stream, k.Group) + ".i." + natsfanout.Token(k.Item)
}

func (s *Store) lock(stream, group string) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(stream)
	h.WriteByte(0)
	h.WriteString(group)
	return &s.locks[h.Sum64()%uint64(len(s.locks))]
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// head is the group's last message: its group sequence and stream sequence
// (both 0 for an empty group).
func (s *Store) head(ctx context.Context, stream, group string) (seq, streamSeq uint64, err error) {
	m, err := s.st.GetLastMsgForSubject(ctx, s.group(stream, group)+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("jsstore: %w", err)
	}
	seq, err = strconv.ParseUint(m.Header.Get(hSeq), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("jsstore: message %d has no %s", m.Sequence, hSeq)
	}
	return seq, m.Sequence, nil
}

// item reads an item by its subject; a tombstone is a missing item.
func (s *Store) item(ctx context.Context, subject string) (store.Item, error) {
	m, err := s.st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return store.Item{}, nil
	}
	if err != nil {
		return store.Item{}, fmt.Errorf("jsstore: %w", err)
	}
	if m.Header.Get(hOp) != "put" {
		return store.Item{}, nil
	}
	seq, _ := strconv.ParseUint(m.Header.Get(hSeq), 10, 64)
	return store.Item{Value: m.Data, Seq: seq}, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, k store.Key) (store.Item, uint64, error) {
	if err := s.check(ctx); err != nil {
		return store.Item{}, 0, err
	}
	seq, _, err := s.head(ctx, k.Stream, k.Group)
	if err != nil {
		return store.Item{}, 0, err
	}
	it, err := s.item(ctx, s.itemSubject(k))
	it.ID = k.Item
	return it, seq, err
}

// write publishes one message as a compare-and-set on the group, retrying
// while other engines win the race. build sees the group's sequence and
// returns the message to publish (nil: nothing to write) or an error; it
// may run more than once. The caller holds the group's lock.
func (s *Store) write(ctx context.Context, stream, group string, build func(seq uint64) (*nats.Msg, error)) (uint64, bool, error) {
	for attempt := range s.cfg.MaxRetries {
		if attempt > 2 { // contended: let the other engines through
			wait := time.Duration(rand.Int64N(int64(min(attempt, 50)) * int64(time.Millisecond)))
			select {
			case <-ctx.Done():
				return 0, false, ctx.Err()
			case <-time.After(wait):
			}
		}
		seq, streamSeq, err := s.head(ctx, stream, group)
		if err != nil {
			return 0, false, err
		}
		m, err := build(seq)
		if err != nil || m == nil {
			return 0, false, err
		}
		m.Header.Set(hSeq, strconv.FormatUint(seq+1, 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(streamSeq, 10))
		m.Header.Set("Nats-Expected-Last-Subject-Sequence-Subject", s.group(stream, group)+".>")
		_, err = s.js.PublishMsg(ctx, m)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == errWrongLastSequence) {
			continue // another engine wrote to the group first
		}
		if err != nil {
			return 0, false, fmt.Errorf("jsstore: %w", err)
		}
		return seq + 1, true, nil
	}
	return 0, false, fmt.Errorf("jsstore: group %q/%q: gave up after %d conflicting writes", stream, group, s.cfg.MaxRetries)
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
	l := s.lock(k.Stream, k.Group)
	l.Lock()
	defer l.Unlock()
	subj := s.itemSubject(k)
	var old store.Item
	var value []byte
	seq, _, err := s.write(ctx, k.Stream, k.Group, func(uint64) (*nats.Msg, error) {
		var err error
		if old, err = s.item(ctx, subj); err != nil {
			return nil, err
		}
		if c.IfSeq != nil && *c.IfSeq != old.Seq {
			return nil, store.ErrConflict
		}
		if value, err = m(old.Value, old.Seq != 0); err != nil {
			return nil, err
		}
		msg := nats.NewMsg(subj)
		msg.Header.Set(hOp, "put")
		msg.Data = value
		return msg, nil
	})
	if err != nil {
		return store.Change{}, err
	}
	ch := store.Change{Key: k, Kind: store.KindUpdate, Old: old.Value, Value: value, Seq: seq, Time: s.now()}
	if old.Seq == 0 {
		ch.Kind, ch.Old = store.KindCreate, nil
	}
	s.commit(ch)
	return ch, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, k store.Key, c store.Cond) (store.Change, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Change{}, false, err
	}
	l := s.lock(k.Stream, k.Group)
	l.Lock()
	defer l.Unlock()
	subj := s.itemSubject(k)
	var old store.Item
	seq, ok, err := s.write(ctx, k.Stream, k.Group, func(uint64) (*nats.Msg, error) {
		var err error
		if old, err = s.item(ctx, subj); err != nil {
			return nil, err
		}
		if c.IfSeq != nil && *c.IfSeq != old.Seq {
			return nil, store.ErrConflict
		}
		if old.Seq == 0 {
			return nil, nil // nothing to delete
		}
		msg := nats.NewMsg(subj)
		msg.Header.Set(hOp, "del")
		return msg, nil
	})
	if err != nil || !ok {
		return store.Change{}, false, err
	}
	ch := store.Change{Key: k, Kind: store.KindDelete, Old: old.Value, Value: old.Value, Seq: seq, Time: s.now()}
	s.commit(ch)
	return ch, true, nil
}

// Emit implements store.Store: the change is written on the group's event
// subject, where it advances the group's sequence and stores nothing.
func (s *Store) Emit(ctx context.Context, c store.Change) (store.Change, error) {
	if err := s.check(ctx); err != nil {
		return store.Change{}, err
	}
	l := s.lock(c.Stream, c.Group)
	l.Lock()
	defer l.Unlock()
	seq, _, err := s.write(ctx, c.Stream, c.Group, func(uint64) (*nats.Msg, error) {
		msg := nats.NewMsg(s.group(c.Stream, c.Group) + ".e")
		msg.Header.Set(hOp, "emit")
		msg.Header.Set(hKind, c.Kind.String())
		msg.Header.Set(hType, c.EventType)
		msg.Header.Set(hItem, c.Item)
		msg.Data = c.Value
		return msg, nil
	})
	if err != nil {
		return store.Change{}, err
	}
	ch := store.Change{Key: c.Key, Kind: c.Kind, Old: c.Old, Value: c.Value, EventType: c.EventType, Seq: seq, Time: s.now()}
	s.commit(ch)
	return ch, nil
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

// List implements store.Store. The group's sequence is read first, so an
// item written meanwhile may show its newer value: a subscriber then sees
// that change once more, never misses it.
func (s *Store) List(ctx context.Context, stream, group, after string, limit int) (store.Page, error) {
	if err := s.check(ctx); err != nil {
		return store.Page{}, err
	}
	seq, _, err := s.head(ctx, stream, group)
	if err != nil {
		return store.Page{}, err
	}
	prefix := s.group(stream, group) + ".i."
	subjects, err := s.subjects(ctx, prefix+"*")
	if err != nil {
		return store.Page{}, err
	}
	type entry struct{ id, subject string }
	var items []entry
	for _, subj := range subjects {
		id, err := natsfanout.ParseToken(strings.TrimPrefix(subj, prefix))
		if err != nil {
			continue
		}
		if after == "" || id > after {
			items = append(items, entry{id, subj})
		}
	}
	slices.SortFunc(items, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	p := store.Page{Items: []store.Item{}, Seq: seq}
	for _, e := range items {
		it, err := s.item(ctx, e.subject)
		if err != nil {
			return store.Page{}, err
		}
		if it.Seq == 0 {
			continue // deleted
		}
		if limit > 0 && len(p.Items) == limit {
			p.More = true
			break
		}
		it.ID = e.id
		p.Items = append(p.Items, it)
	}
	return p, nil
}

// groupsWithItems maps stream → groups that hold at least one item, for
// the item subjects matching filter.
func (s *Store) groupsWithItems(ctx context.Context, filter string) (map[string][]string, error) {
	subjects, err := s.subjects(ctx, filter)
	if err != nil {
		return nil, err
	}
	slices.Sort(subjects)
	out := map[string][]string{}
	seen := map[string]bool{}
	for _, subj := range subjects {
		toks := strings.Split(strings.TrimPrefix(subj, s.cfg.Prefix+"."), ".")
		if len(toks) != 4 || toks[2] != "i" || seen[toks[0]+"."+toks[1]] {
			continue
		}
		it, err := s.item(ctx, subj)
		if err != nil {
			return nil, err
		}
		if it.Seq == 0 {
			continue
		}
		stream, err1 := natsfanout.ParseToken(toks[0])
		group, err2 := natsfanout.ParseToken(toks[1])
		if err1 != nil || err2 != nil {
			continue
		}
		seen[toks[0]+"."+toks[1]] = true
		out[stream] = append(out[stream], group)
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
	gs, err := s.groupsWithItems(ctx, s.cfg.Prefix+"."+natsfanout.Token(stream)+".*.i.*")
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
	gs, err := s.groupsWithItems(ctx, s.cfg.Prefix+".*.*.i.*")
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
