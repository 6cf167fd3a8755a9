package store

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Memory is the in-memory adapter; the file adapter adds a journal to it.
type Memory struct {
	opts Options
	j    journal // nil: nothing to make durable

	mu      sync.RWMutex // guards the streams map and its group maps
	streams map[string]map[string]*group
	closed  atomic.Bool
}

// group is one group's items and sequence, guarded by its own lock so that
// writers to different groups never wait for each other.
type group struct {
	mu    sync.Mutex
	seq   uint64
	items map[string]entry
}

type entry struct {
	value json.RawMessage
	seq   uint64
}

// journal makes changes durable. append is called under the group lock, in
// sequence order; it returns a wait that blocks until the change is durable
// and has been passed to OnCommit. barrier returns a wait for every change
// appended so far.
type journal interface {
	append(c Change, emitted bool) (wait func() error)
	barrier() (wait func() error)
	failed() error
}

// NewMemory returns an empty in-memory store.
func NewMemory(opts Options) *Memory {
	return &Memory{opts: opts, streams: make(map[string]map[string]*group)}
}

func (m *Memory) group(stream, id string, create bool) *group {
	m.mu.RLock()
	g := m.streams[stream][id]
	m.mu.RUnlock()
	if g != nil || !create {
		return g
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	gs := m.streams[stream]
	if gs == nil {
		gs = make(map[string]*group)
		m.streams[stream] = gs
	}
	if g = gs[id]; g == nil {
		g = &group{items: make(map[string]entry)}
		gs[id] = g
	}
	return g
}

func (m *Memory) check(ctx context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if m.j != nil {
		if err := m.j.failed(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// commit records ch, which the caller has applied under g.mu;
// emitted says it was not stored (Emit).
func (m *Memory) commit(ch Change, emitted bool) func() error {
	if m.j != nil {
		return m.j.append(ch, emitted)
	}
	if m.opts.OnCommit != nil {
		m.opts.OnCommit(ch)
	}
	return nil
}

// settle waits for a commit or a read barrier, if there is one.
func settle(wait func() error) error {
	if wait == nil {
		return nil
	}
	return wait()
}

func (m *Memory) readBarrier() error {
	if m.j == nil {
		return nil
	}
	return settle(m.j.barrier())
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, k Key) (Item, uint64, error) {
	if err := m.check(ctx); err != nil {
		return Item{}, 0, err
	}
	g := m.group(k.Stream, k.Group, false)
	if g == nil {
		return Item{ID: k.Item}, 0, nil
	}
	g.mu.Lock()
	e := g.items[k.Item]
	seq := g.seq
	g.mu.Unlock()
	return Item{ID: k.Item, Value: e.value, Seq: e.seq}, seq, m.readBarrier()
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, k Key, c Cond, mut Mutator) (Change, error) {
	if err := m.check(ctx); err != nil {
		return Change{}, err
	}
	g := m.group(k.Stream, k.Group, true)
	g.mu.Lock()
	e, exists := g.items[k.Item]
	if c.IfSeq != nil && *c.IfSeq != e.seq {
		g.mu.Unlock()
		return Change{}, ErrConflict
	}
	v, err := mut(e.value, exists)
	if err != nil {
		g.mu.Unlock()
		return Change{}, err
	}
	g.seq++
	ch := Change{Key: k, Kind: KindUpdate, Old: e.value, Value: v, Seq: g.seq, Time: m.opts.now(), Ctx: ctx}
	if !exists {
		ch.Kind = KindCreate
	}
	g.items[k.Item] = entry{value: v, seq: g.seq}
	wait := m.commit(ch, false)
	g.mu.Unlock()
	return ch, settle(wait)
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, k Key, c Cond) (Change, bool, error) {
	if err := m.check(ctx); err != nil {
		return Change{}, false, err
	}
	g := m.group(k.Stream, k.Group, false)
	if g == nil {
		if c.IfSeq != nil && *c.IfSeq != 0 {
			return Change{}, false, ErrConflict
		}
		return Change{}, false, nil
	}
	g.mu.Lock()
	e, exists := g.items[k.Item]
	if c.IfSeq != nil && *c.IfSeq != e.seq {
		g.mu.Unlock()
		return Change{}, false, ErrConflict
	}
	if !exists {
		g.mu.Unlock()
		return Change{}, false, m.readBarrier()
	}
	g.seq++
	delete(g.items, k.Item)
	ch := Change{Key: k, Kind: KindDelete, Old: e.value, Value: e.value, Seq: g.seq, Time: m.opts.now(), Ctx: ctx}
	wait := m.commit(ch, false)
	g.mu.Unlock()
	return ch, true, settle(wait)
}

// Emit implements Store.
func (m *Memory) Emit(ctx context.Context, c Change) (Change, error) {
	if err := m.check(ctx); err != nil {
		return Change{}, err
	}
	g := m.group(c.Stream, c.Group, true)
	g.mu.Lock()
	g.seq++
	ch := Change{Key: c.Key, Kind: c.Kind, Old: c.Old, Value: c.Value, EventType: c.EventType, Seq: g.seq, Time: m.opts.now(), Ctx: ctx}
	wait := m.commit(ch, true)
	g.mu.Unlock()
	return ch, settle(wait)
}

// List implements Store.
func (m *Memory) List(ctx context.Context, stream, groupID string, r Range) (Page, error) {
	if err := m.check(ctx); err != nil {
		return Page{}, err
	}
	g := m.group(stream, groupID, false)
	if g == nil {
		return Page{Items: []Item{}}, nil
	}
	g.mu.Lock()
	ids := make([]string, 0, len(g.items))
	for id := range g.items {
		if r.After == "" || id > r.After {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	p := Page{Seq: g.seq, Items: []Item{}}
	size := 0
	for _, id := range ids {
		e := g.items[id]
		it := Item{ID: id, Value: e.value, Seq: e.seq}
		ok, n := r.Take(len(p.Items), size, it)
		if !ok {
			p.More = true
			break
		}
		p.Items, size = append(p.Items, it), n
	}
	g.mu.Unlock()
	return p, m.readBarrier()
}

// ListGroups implements Store.
func (m *Memory) ListGroups(ctx context.Context, stream string) ([]string, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	out := nonEmpty(m.streams[stream])
	m.mu.RUnlock()
	return out, m.readBarrier()
}

// nonEmpty returns the sorted ids of the groups in gs that hold items.
// Callers hold m.mu.
func nonEmpty(gs map[string]*group) []string {
	out := []string{}
	for id, g := range gs {
		g.mu.Lock()
		n := len(g.items)
		g.mu.Unlock()
		if n > 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// ListAll implements Store.
func (m *Memory) ListAll(ctx context.Context) ([]StreamGroups, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	out := []StreamGroups{}
	for _, s := range slices.SortedFunc(maps.Keys(m.streams), strings.Compare) {
		if gs := nonEmpty(m.streams[s]); len(gs) > 0 {
			out = append(out, StreamGroups{ID: s, Groups: gs})
		}
	}
	m.mu.RUnlock()
	return out, m.readBarrier()
}

// Close implements Store. Later calls fail with ErrClosed.
func (m *Memory) Close() error {
	m.closed.Store(true)
	return nil
}

// each calls f for every group under its lock; the file adapter uses it to
// write snapshots. Callers must not hold m.mu.
func (m *Memory) each(f func(stream, id string, g *group)) {
	m.mu.RLock()
	type ref struct {
		stream, id string
		g          *group
	}
	var refs []ref
	for s, gs := range m.streams {
		for id, g := range gs {
			refs = append(refs, ref{s, id, g})
		}
	}
	m.mu.RUnlock()
	for _, r := range refs {
		r.g.mu.Lock()
		f(r.stream, r.id, r.g)
		r.g.mu.Unlock()
	}
}
