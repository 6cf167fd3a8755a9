// Package contracts keeps the contracts of the stream and state modules
// durable and in force: Store is the contract.Store adapter over any
// store.Store (memory, file, JetStream), and Set is what a module asks on
// every write: which contract, if any, a stream or a scope has.
//
// A Set answers the names without a contract from one atomic load and one
// map lookup, so that writes to them cost nothing more; the others go to
// the contract.Registry, which keeps compiled contracts within its limits.
// Engines sharing a JetStream store learn of each other's definitions
// through Changed, which the caller feeds from jsstore's Watch.
//
// Concurrency: a Store and a Set are safe for concurrent use. The package
// starts no goroutines.
package contracts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
)

// The namespaces (store.Key.Stream) of the two modules' contracts, so one
// store.Store holds both.
const (
	Streams = "streams"
	State   = "state"
)

// versionsItem is the item of a name's group that lists the items holding
// its definitions, oldest first: writing it is the commit, a
// compare-and-set on the last version through the store's atomic Put.
const versionsItem = "versions"

// Store is a contract.Store over a store.Store. Under namespace ns, the
// group named after a stream (or scope) holds one item per definition,
// with an id of its own, and the versions item that lists them. A
// definition is written first under a fresh id, then committed by adding
// that id to the list if the last version is still the one expected: two
// engines defining at once never overwrite each other, and the one that
// loses leaves an item nothing lists.
type Store struct {
	st store.Store
	ns string
}

var (
	_ contract.Store     = (*Store)(nil)
	_ contract.LastStore = (*Store)(nil)
)

// NewStore returns the adapter over st for namespace ns.
func NewStore(st store.Store, ns string) *Store { return &Store{st: st, ns: ns} }

// committed is one entry of the versions item.
type committed struct {
	Version uint64 `json:"version"`
	Item    string `json:"item"`
}

func (s *Store) key(name, item string) store.Key {
	return store.Key{Stream: s.ns, Group: name, Item: item}
}

func (s *Store) versions(ctx context.Context, name string) ([]committed, error) {
	it, _, err := s.st.Get(ctx, s.key(name, versionsItem))
	if err != nil || it.Value == nil {
		return nil, err
	}
	var vs []committed
	if err := json.Unmarshal(it.Value, &vs); err != nil {
		return nil, fmt.Errorf("contracts of %q: versions: %w", name, err)
	}
	return vs, nil
}

// Definitions returns the name's definitions, oldest first.
func (s *Store) Definitions(ctx context.Context, name string) ([]contract.Definition, error) {
	vs, err := s.versions(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]contract.Definition, 0, len(vs))
	for _, v := range vs {
		d, err := s.definition(ctx, name, v)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Last returns the name's last definition alone.
func (s *Store) Last(ctx context.Context, name string) (contract.Definition, bool, error) {
	vs, err := s.versions(ctx, name)
	if err != nil || len(vs) == 0 {
		return contract.Definition{}, false, err
	}
	d, err := s.definition(ctx, name, vs[len(vs)-1])
	return d, err == nil, err
}

func (s *Store) definition(ctx context.Context, name string, v committed) (contract.Definition, error) {
	var d contract.Definition
	it, _, err := s.st.Get(ctx, s.key(name, v.Item))
	if err != nil {
		return d, err
	}
	if it.Value == nil {
		return d, fmt.Errorf("contracts of %q: version %d is missing", name, v.Version)
	}
	if err := json.Unmarshal(it.Value, &d); err != nil {
		return d, fmt.Errorf("contracts of %q: version %d: %w", name, v.Version, err)
	}
	return d, nil
}

// Append stores d after the name's last definition if that is still
// version last.
func (s *Store) Append(ctx context.Context, d contract.Definition, last uint64) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	item := fmt.Sprintf("v%020d.%s", d.Version, hex.EncodeToString(id[:]))
	if _, err := store.PutValue(ctx, s.st, s.key(d.Stream, item), store.Cond{}, b); err != nil {
		return err
	}
	_, err = s.st.Put(ctx, s.key(d.Stream, versionsItem), store.Cond{}, func(old json.RawMessage, exists bool) (json.RawMessage, error) {
		var vs []committed
		if exists {
			if err := json.Unmarshal(old, &vs); err != nil {
				return nil, fmt.Errorf("contracts of %q: versions: %w", d.Stream, err)
			}
		}
		var cur uint64
		if len(vs) > 0 {
			cur = vs[len(vs)-1].Version
		}
		if cur != last {
			return nil, fmt.Errorf("append version %d to %q: last is %d, not %d: %w", d.Version, d.Stream, cur, last, contract.ErrVersion)
		}
		return json.Marshal(append(vs, committed{d.Version, item}))
	})
	return err
}

// Names lists the names that have a contract.
func (s *Store) Names(ctx context.Context) ([]string, error) { return s.st.ListGroups(ctx, s.ns) }

// Set is the contracts of one module's streams (or scopes) in force.
type Set struct {
	store *Store
	reg   *contract.Registry

	mu    sync.Mutex                       // serialises changes of names
	names atomic.Pointer[map[string]*gate] // the names with a contract
	// pending holds the versions being defined, whose stored items are
	// being re-checked: writes meanwhile must satisfy them too.
	pending atomic.Pointer[map[string]*contract.Contract]
	limits  contract.Limits
	// refusals are the recent writes the contracts refused (Refuse).
	refusals refusals
	waiting  atomic.Int32 // definitions draining writes (Draining)
}

// NewSet returns the Set of namespace ns of st, compiling with c. Call
// Load before the module takes writes.
func NewSet(st store.Store, ns string, c *contract.Compiler) *Set {
	s := &Set{store: NewStore(st, ns)}
	s.reg = contract.NewRegistry(s.store, c)
	s.limits = c.Limits()
	s.names.Store(&map[string]*gate{})
	s.pending.Store(&map[string]*contract.Contract{})
	return s
}

// NewMemorySet is a Set in memory, for a module given none.
func NewMemorySet(ns string) *Set {
	return NewSet(store.NewMemory(store.Options{}), ns, contract.NewCompiler(contract.Limits{}))
}

// Load reads which names have a contract.
func (s *Set) Load(ctx context.Context) error {
	names, err := s.store.Names(ctx)
	if err != nil {
		return fmt.Errorf("read contracts: %w", err)
	}
	for _, n := range names {
		s.add(n)
	}
	return nil
}

func (s *Set) add(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := *s.names.Load()
	if _, ok := cur[name]; ok {
		return
	}
	next := maps.Clone(cur)
	next[name] = newGate()
	s.names.Store(&next)
}

// Lookup returns the contract in force for name, or nil: for a name
// without one, without taking a lock.
func (s *Set) Lookup(ctx context.Context, name string) (*contract.Contract, error) {
	if _, ok := (*s.names.Load())[name]; !ok {
		return nil, nil
	}
	return s.lookup(ctx, name)
}

// lookup is Lookup for a name with a contract.
func (s *Set) lookup(ctx context.Context, name string) (*contract.Contract, error) {
	c, err := s.reg.Contract(ctx, name)
	if next := (*s.pending.Load())[name]; next != nil && c != nil && err == nil {
		return c.Also(next), nil
	}
	return c, err
}

// setPending makes next (nil: none) the version of name being defined.
func (s *Set) setPending(name string, next *contract.Contract) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := maps.Clone(*s.pending.Load())
	if next == nil {
		delete(p, name)
	} else {
		p[name] = next
	}
	s.pending.Store(&p)
}

// Evolve is Define for a definition made through a call: when the name
// already has a contract, every item t holds for it is checked against
// the new version (and migrated through the function migrate, if set,
// under the rights of the call def) before the version is stored, and
// its history too. From the start of that check until the new version is
// in force, writes must satisfy both versions, and the check starts only
// once the writes checked against the old version alone are committed
// (see Begin), so nothing written meanwhile escapes it.
//
// The Progress is nil when nothing was re-checked (a first version).
func (s *Set) Evolve(ctx context.Context, d contract.Definition, t *Target, def engine.Call, migrate string) (*contract.Contract, *Progress, error) {
	var p *Progress
	var verify contract.Verify
	if t != nil {
		verify = func(ctx context.Context, next *contract.Contract) error {
			s.setPending(d.Stream, next)
			e := &evolution{t: *t, limits: s.limits, name: d.Stream, migrate: migrate, def: def, next: next, start: time.Now(), seen: map[store.Key]uint64{}}
			err := e.run(ctx, func(ctx context.Context) error { return s.drain(ctx, d.Stream) })
			p = &e.p
			return err
		}
		defer s.setPending(d.Stream, nil)
	}
	if migrate != "" && (t == nil || t.Call == nil) {
		return nil, p, engine.Errorf(codes.InvalidArgument, "%s: migrate is not supported here", def.FunctionID)
	}
	c, err := s.reg.DefineWith(ctx, d, verify)
	if err != nil {
		return nil, p, err
	}
	s.add(d.Stream)
	return c, p, nil
}

// Define checks and stores a new definition (contract.Registry.Define).
func (s *Set) Define(ctx context.Context, d contract.Definition) (*contract.Contract, error) {
	c, err := s.reg.Define(ctx, d)
	if err != nil {
		return nil, err
	}
	s.add(d.Stream)
	return c, nil
}

// Changed tells the Set that name's contracts changed in its store,
// through another engine: the next write reads them again.
func (s *Set) Changed(name string) {
	s.add(name)
	s.reg.Forget(name)
}

// History returns name's definitions, oldest first.
func (s *Set) History(ctx context.Context, name string) ([]contract.Definition, error) {
	return s.reg.History(ctx, name)
}

// Refused gives a contract refusal of function fn its engine code;
// tail, if set, says what it means ("nothing was written").
func Refused(fn string, err error, tail string) error {
	var ce *contract.Error
	if errors.As(err, &ce) {
		if tail != "" {
			return engine.Errorf(engine.Code(ce.Code()), "%s: %s; %s", fn, ce.Message, tail)
		}
		return engine.Errorf(engine.Code(ce.Code()), "%s: %s", fn, ce.Message)
	}
	var ee *engine.Error
	if errors.As(err, &ee) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, store.ErrTooLarge) {
		if tail != "" {
			return engine.Errorf(codes.MessageTooLarge, "%s: the definition is too large for the contract store: %v; %s", fn, err, tail)
		}
		return engine.Errorf(codes.MessageTooLarge, "%s: the definition is too large for the contract store: %v", fn, err)
	}
	return engine.Errorf(codes.Internal, "%s: %v", fn, err)
}

// For returns name's contract in force, or nil, for a read by function
// fn: for a name without one, one map lookup. Writes use Begin.
func (s *Set) For(ctx context.Context, fn, name string) (*contract.Contract, error) {
	c, err := s.Lookup(ctx, name)
	if err != nil {
		return nil, Refused(fn, err, "")
	}
	return c, nil
}

// CheckGroup refuses a write by function fn to group when c, if set,
// has a group id pattern that group does not match; tail says what the
// refusal means ("nothing was written").
func CheckGroup(fn string, c *contract.Contract, group, tail string) error {
	if c == nil || c.GroupID == "" || engine.MatchPattern(c.GroupID, group) {
		return nil
	}
	return engine.Errorf(codes.InvalidArgument, "%s: group_id %q does not match the stream's group_id_pattern %q; %s", fn, group, c.GroupID, tail)
}

// Check refuses a value that c, if set, does not accept, for a write by
// function fn.
func Check(fn string, c *contract.Contract, v json.RawMessage) error {
	if c == nil {
		return nil
	}
	if err := c.ValidateItem(v); err != nil {
		return Refused(fn, err, "nothing was written")
	}
	return nil
}

// DefineCall serves a define function (stream::define, state::define):
// it reads the definition (see ReadDefinition), defines it and answers
// {<nameField>, version, compatibility}.
//
// When the name already has a contract, what t holds is re-checked
// against the new version (see Evolve), migrate (optional) naming the
// function that converts the items that fail; the answer then carries
// the re-check's progress under "checked" (absent for a first version).
func (s *Set) DefineCall(ctx context.Context, c engine.Call, nameField string, readName func(engine.Input, string) (string, error), events bool, t *Target) ([]byte, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return nil, err
	}
	d, err := ReadDefinition(in, nameField, readName, events)
	if err != nil {
		return nil, err
	}
	migrate, _, err := in.String("migrate")
	if err != nil {
		return nil, err
	}
	if migrate != "" {
		if err := engine.ValidateID("migrate", migrate); err != nil {
			return nil, err
		}
	}
	ct, p, err := s.Evolve(ctx, d, t, c, migrate)
	if err != nil {
		return nil, Refused(c.FunctionID, err, "nothing was stored")
	}
	out := map[string]any{nameField: ct.Stream, "version": ct.Version, "compatibility": ct.Mode}
	if p != nil {
		out["checked"] = p
	}
	return engine.MarshalJSON(out)
}

// ReadDefinition reads a define call's input: the name under nameField
// (checked by readName), item_schema, event_schemas when events is true,
// version and compatibility.
func ReadDefinition(in engine.Input, nameField string, readName func(engine.Input, string) (string, error), events bool) (contract.Definition, error) {
	var d contract.Definition
	var err error
	if d.Stream, err = readName(in, nameField); err != nil {
		return d, err
	}
	if d.Item = in.Raw("item_schema"); d.Item == nil {
		return d, in.Missing("item_schema")
	}
	if raw := in.Raw("event_schemas"); raw != nil && string(raw) != "null" {
		if !events {
			return d, in.Invalid(errors.New("event_schemas: this module sends no events"))
		}
		if err := json.Unmarshal(raw, &d.Events); err != nil {
			return d, in.Invalid(errors.New("event_schemas must be an object of schemas by event type"))
		}
	}
	v, err := in.Uint64("version")
	if err != nil {
		return d, err
	}
	if v == nil {
		return d, in.Missing("version")
	}
	d.Version = *v
	if d.GroupID, _, err = in.String("group_id_pattern"); err != nil {
		return d, err
	}
	if len(d.GroupID) > 256 || !utf8.ValidString(d.GroupID) {
		return d, in.Invalid(errors.New("group_id_pattern: at most 256 bytes of UTF-8"))
	}
	mode, _, err := in.String("compatibility")
	if err != nil {
		return d, err
	}
	d.Mode = contract.Mode(mode)
	return d, nil
}

// Schema is engine::streams::schema's answer: the contract in force (nil
// when there is none) and every definition, oldest first.
type Schema struct {
	Name    string                `json:"stream_name"`
	Current *contract.Definition  `json:"current"`
	History []contract.Definition `json:"history"`
}

// Schema returns name's contract in force and its history.
func (s *Set) Schema(ctx context.Context, name string) (Schema, error) {
	h, err := s.History(ctx, name)
	if err != nil {
		return Schema{}, err
	}
	out := Schema{Name: name, History: h}
	if out.History == nil {
		out.History = []contract.Definition{}
	}
	if len(h) > 0 {
		out.Current = &h[len(h)-1]
	}
	return out, nil
}
