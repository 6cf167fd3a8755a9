package contract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Definition is one version of a stream's contract, as declared: a schema
// for the stream's items, optional schemas per event type (once any is
// declared, an undeclared type is refused), a version and a mode.
type Definition struct {
	Stream  string                     `json:"stream_name"`
	Version uint64                     `json:"version"`
	Mode    Mode                       `json:"compatibility,omitempty"`
	Item    json.RawMessage            `json:"item_schema"`
	Events  map[string]json.RawMessage `json:"event_schemas,omitempty"`
	// GroupID, if set, is the pattern every group id of the stream
	// matches ("list-*": * matches any characters); writes to other
	// groups are refused, and `trine codegen ts` types group ids with it.
	GroupID string `json:"group_id_pattern,omitempty"`
}

// Store keeps every definition of every stream, durably where the
// adapter is durable. Implementations must be safe for concurrent use.
type Store interface {
	// Definitions returns the stream's definitions, oldest first; a
	// stream with none has an empty history, not an error.
	Definitions(ctx context.Context, stream string) ([]Definition, error)
	// Append stores d after the stream's last definition, provided that
	// last still has version last (0: the stream has none); otherwise it
	// stores nothing and returns an error wrapping ErrVersion.
	Append(ctx context.Context, d Definition, last uint64) error
}

// LastStore is a Store that reads a stream's last definition without the
// ones before it. The Registry reads the contract in force through it
// when it can, so that a write finding no contract in memory costs one
// definition, not the stream's whole history.
type LastStore interface {
	// Last returns the stream's last definition; ok is false when it has
	// none.
	Last(ctx context.Context, stream string) (d Definition, ok bool, err error)
}

// Contract is a stream's contract in force: its definition, compiled.
type Contract struct {
	Definition
	item   *Schema
	events map[string]*Schema
	limits Limits
	// next, when set, is a version being defined: while the stored items
	// are checked against it, writes must satisfy both.
	next *Contract
}

// Also returns c that also requires what next requires: the contract in
// force while next is being defined.
func (c *Contract) Also(next *Contract) *Contract {
	cc := *c
	cc.next = next
	return &cc
}

// ValidateItem checks an item's value against the item schema.
func (c *Contract) ValidateItem(value []byte) error {
	if err := c.item.Validate(value); err != nil {
		return err
	}
	if c.next != nil {
		return c.next.ValidateItem(value)
	}
	return nil
}

// ValidateEvent checks an event sent with stream::send. A stream that
// declares no event types accepts any; one that does refuses the others.
func (c *Contract) ValidateEvent(eventType string, value []byte) error {
	if len(c.events) > 0 {
		s, ok := c.events[eventType]
		if !ok {
			msg := fmt.Sprintf("event type %q is not declared by stream %q", truncate(eventType, 100), truncate(c.Stream, 100))
			return newError(CodeInvalidArgument, ErrUnknownEventType, "", []string{msg}, c.limits.MaxMessageBytes)
		}
		if err := s.Validate(value); err != nil {
			return err
		}
	}
	if c.next != nil {
		return c.next.ValidateEvent(eventType, value)
	}
	return nil
}

func (c *Contract) size() int64 {
	n := int64(len(c.item.source))
	for _, s := range c.events {
		n += int64(len(s.source))
	}
	return n
}

// Registry holds the contracts of streams: it checks and stores new
// definitions and answers the contract in force, kept in memory within
// Limits.MaxCachedContracts and read from its Store otherwise. It is safe
// for concurrent use; definitions are serialised.
type Registry struct {
	store    Store
	compiler *Compiler
	limits   Limits
	defining sync.Mutex
	current  *lru[string, *Contract] // nil value: the stream has no contract
	// forgets counts Forget calls: a contract read from the store while
	// one happened may predate it, and is not kept.
	forgets atomic.Uint64
}

// NewRegistry returns a Registry over store, compiling with compiler.
func NewRegistry(store Store, compiler *Compiler) *Registry {
	l := compiler.Limits()
	return &Registry{store: store, compiler: compiler, limits: l, current: newLRU[string, *Contract](l.MaxCachedContracts, l.MaxCachedBytes)}
}

// Contract returns the stream's contract in force, or nil when it has none.
func (r *Registry) Contract(ctx context.Context, stream string) (*Contract, error) {
	if c, ok := r.current.get(stream); ok {
		return c, nil
	}
	forgets := r.forgets.Load()
	last, ok, err := r.last(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("read contract of %s: %w", stream, err)
	}
	var c *Contract
	if ok {
		if c, err = r.compile(last); err != nil {
			return nil, fmt.Errorf("compile contract of %s: %w", stream, err)
		}
	}
	if r.forgets.Load() == forgets {
		r.keep(stream, c)
	}
	return c, nil
}

// last reads the stream's last definition, through LastStore when the
// store is one.
func (r *Registry) last(ctx context.Context, stream string) (Definition, bool, error) {
	if ls, ok := r.store.(LastStore); ok {
		return ls.Last(ctx, stream)
	}
	history, err := r.store.Definitions(ctx, stream)
	if err != nil || len(history) == 0 {
		return Definition{}, false, err
	}
	return history[len(history)-1], true, nil
}

// History returns every definition of the stream, oldest first.
func (r *Registry) History(ctx context.Context, stream string) ([]Definition, error) {
	return r.store.Definitions(ctx, stream)
}

// Forget drops what the registry keeps in memory of stream, so that the
// next Contract reads the Store (after another engine defined it).
func (r *Registry) Forget(stream string) {
	r.forgets.Add(1)
	r.current.delete(stream)
}

// Define checks d and stores it as the stream's new contract. Refused,
// nothing is stored:
//   - a malformed definition or a schema that does not compile
//     (invalid_argument, ErrInvalidDefinition or ErrInvalidSchema);
//   - a version not above the stream's last (conflict, ErrVersion);
//   - a change the mode forbids, against the last version or, for the
//     _TRANSITIVE modes, every earlier one (conflict, ErrIncompatible),
//     listing the first incompatible paths.
//
// The mode is d.Mode, else the last definition's, else BACKWARD; as in
// Confluent's registry, a definition that changes the mode is checked
// under its new mode.
func (r *Registry) Define(ctx context.Context, d Definition) (*Contract, error) {
	return r.DefineWith(ctx, d, nil)
}

// Verify checks what a stream holds against next, a new version of its
// contract that passed every other check, before it is stored: a Verify
// that fails refuses the definition. It runs while definitions of the
// registry are serialised.
type Verify func(ctx context.Context, next *Contract) error

// DefineWith is Define, running verify (if set) when the stream already
// has a contract, just before the new version is stored.
func (r *Registry) DefineWith(ctx context.Context, d Definition, verify Verify) (*Contract, error) {
	if err := r.check(&d); err != nil {
		return nil, err
	}
	c, err := r.compile(d)
	if err != nil {
		return nil, err
	}
	r.defining.Lock()
	defer r.defining.Unlock()
	history, err := r.store.Definitions(ctx, d.Stream)
	if err != nil {
		return nil, fmt.Errorf("read contract of %s: %w", d.Stream, err)
	}
	if err := r.checkRoom(d, history); err != nil {
		return nil, err
	}
	var last uint64
	if len(history) > 0 {
		prev := history[len(history)-1]
		last = prev.Version
		if d.Version <= last {
			return nil, newError(CodeConflict, ErrVersion, "", []string{fmt.Sprintf("version %d is not above the last, %d", d.Version, last)}, r.limits.MaxMessageBytes)
		}
		if d.Mode == "" {
			d.Mode = prev.Mode
		}
	}
	if d.Mode == "" {
		d.Mode = Backward
	}
	c.Mode = d.Mode
	if err := r.checkCompatible(c, history); err != nil {
		return nil, err
	}
	if verify != nil && len(history) > 0 {
		if err := verify(ctx, c); err != nil {
			return nil, err
		}
	}
	if err := r.store.Append(ctx, d, last); err != nil {
		if errors.Is(err, ErrVersion) {
			return nil, newError(CodeConflict, ErrVersion, "", []string{fmt.Sprintf("stream %q was defined again meanwhile", truncate(d.Stream, 100))}, r.limits.MaxMessageBytes)
		}
		return nil, fmt.Errorf("store contract of %s: %w", d.Stream, err)
	}
	r.keep(d.Stream, c)
	return c, nil
}

func (r *Registry) keep(stream string, c *Contract) {
	size := int64(len(stream))
	if c != nil {
		size += c.size()
	}
	r.current.put(stream, c, size)
}

// checkRoom refuses d when the stream's history has no room left for it,
// in definitions or in bytes of schemas.
func (r *Registry) checkRoom(d Definition, history []Definition) error {
	if n := len(history); n >= r.limits.MaxVersions {
		return newError(CodeConflict, ErrHistoryFull, "", []string{fmt.Sprintf("stream %q has %d definitions, the most a stream keeps (--contract-max-versions)", truncate(d.Stream, 100), n)}, r.limits.MaxMessageBytes)
	}
	total := schemaBytes(d)
	for _, h := range history {
		total += schemaBytes(h)
	}
	if total > r.limits.MaxHistoryBytes {
		return newError(CodeConflict, ErrHistoryFull, "", []string{fmt.Sprintf("stream %q: with this definition its history would hold %d bytes of schemas, over the %d a stream's history keeps (--contract-max-history-bytes)", truncate(d.Stream, 100), total, r.limits.MaxHistoryBytes)}, r.limits.MaxMessageBytes)
	}
	return nil
}

// schemaBytes is the bytes of d's schemas, item and events.
func schemaBytes(d Definition) int64 {
	n := int64(len(d.Item))
	for _, e := range d.Events {
		n += int64(len(e))
	}
	return n
}

// check refuses a malformed definition and spells its mode.
func (r *Registry) check(d *Definition) error {
	if d.Stream == "" {
		return invalidDefinition("stream_name is required")
	}
	if d.Version == 0 || d.Version > MaxVersion {
		return invalidDefinition("version must be 1 to %d", uint64(MaxVersion))
	}
	if d.Mode != "" {
		m, err := ParseMode(string(d.Mode))
		if err != nil {
			return err
		}
		d.Mode = m
	}
	if len(d.Item) == 0 {
		return invalidDefinition("item_schema is required")
	}
	if len(d.Events) > r.limits.MaxEventTypes {
		return invalidDefinition("%d event types, over the limit of %d", len(d.Events), r.limits.MaxEventTypes)
	}
	for name := range d.Events {
		if !validEventType(name) {
			return invalidDefinition("event type %q: want 1 to 256 bytes of printable UTF-8", truncate(name, 100))
		}
	}
	return nil
}

func validEventType(name string) bool {
	if name == "" || len(name) > 256 || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// compile compiles every schema of d, naming the one that fails.
func (r *Registry) compile(d Definition) (*Contract, error) {
	c := &Contract{Definition: d, events: map[string]*Schema{}, limits: r.limits}
	var err error
	if c.item, err = r.compiler.Compile(d.Item); err != nil {
		return nil, within("item_schema", err)
	}
	for _, name := range sortedKeys(d.Events) {
		s, err := r.compiler.Compile(d.Events[name])
		if err != nil {
			return nil, within(fmt.Sprintf("event_schemas[%q]", truncate(name, 100)), err)
		}
		c.events[name] = s
	}
	return c, nil
}

// within names where a refused schema was found.
func within(where string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{code: e.code, kind: e.kind, Message: where + ": " + e.Message, Problems: e.Problems}
	}
	return err
}

// checkCompatible checks c against the last definition in history or,
// under a transitive mode, against each, newest first.
func (r *Registry) checkCompatible(c *Contract, history []Definition) error {
	if c.Mode == None || len(history) == 0 {
		return nil
	}
	against := history[len(history)-1:]
	if c.Mode.Transitive() {
		against = slices.Clone(history)
		slices.Reverse(against)
	}
	for _, d := range against {
		prev, err := r.compile(d)
		if err != nil {
			return fmt.Errorf("compile version %d of %s: %w", d.Version, d.Stream, err)
		}
		if problems := r.compatible(prev, c); len(problems) > 0 {
			prefix := fmt.Sprintf("incompatible with version %d (%s)", d.Version, c.Mode)
			return newError(CodeConflict, ErrIncompatible, prefix, problems, r.limits.MaxMessageBytes)
		}
	}
	return nil
}

// compatible lists the breaks from old to new: the item schema, then each
// event type. A stream that declared no event types accepted any event;
// one that did accepted none of the others.
func (r *Registry) compatible(old, new *Contract) []string {
	max := r.limits.MaxProblems
	problems := Compatible(old.item, new.item, new.Mode, max)
	switch {
	case len(old.events) == 0 && len(new.events) == 0:
		return problems
	case len(old.events) == 0:
		if new.Mode.backward() {
			problems = append(problems, "events: any event type -> only the declared ones")
		}
		return problems
	case len(new.events) == 0:
		if new.Mode.forward() {
			problems = append(problems, "events: only the declared event types -> any")
		}
		return problems
	}
	nothing, _ := r.compiler.Compile([]byte("false"))
	for _, name := range sortedKeys(union(old.events, new.events)) {
		if len(problems) >= max {
			break
		}
		o, n := old.events[name], new.events[name]
		change := ""
		switch {
		case o == nil:
			o, change = nothing, "added"
		case n == nil:
			n, change = nothing, "removed"
		}
		breaks := Compatible(o, n, new.Mode, max-len(problems))
		if change != "" && len(breaks) > 0 {
			problems = append(problems, fmt.Sprintf("events: event type %q %s", truncate(name, 100), change))
			continue
		}
		for _, p := range breaks {
			problems = append(problems, fmt.Sprintf("event %q %s", truncate(name, 100), p))
		}
	}
	return problems
}

// MemoryStore is a Store in memory, for tests and single engines without
// persistence.
type MemoryStore struct {
	mu      sync.Mutex
	streams map[string][]Definition
}

var (
	_ Store     = (*MemoryStore)(nil)
	_ LastStore = (*MemoryStore)(nil)
)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{streams: map[string][]Definition{}}
}

// Definitions returns a copy of the stream's definitions.
func (m *MemoryStore) Definitions(_ context.Context, stream string) ([]Definition, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.streams[stream]), nil
}

// Last returns the stream's last definition.
func (m *MemoryStore) Last(_ context.Context, stream string) (Definition, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.streams[stream]
	if len(h) == 0 {
		return Definition{}, false, nil
	}
	return h[len(h)-1], true, nil
}

// Append stores d if the stream's last version is still last.
func (m *MemoryStore) Append(_ context.Context, d Definition, last uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.streams[d.Stream]
	var cur uint64
	if len(h) > 0 {
		cur = h[len(h)-1].Version
	}
	if cur != last {
		return fmt.Errorf("append version %d to %s: last is %d, not %d: %w", d.Version, d.Stream, cur, last, ErrVersion)
	}
	d.Item = slices.Clone(d.Item)
	events := make(map[string]json.RawMessage, len(d.Events))
	for k, v := range d.Events {
		events[k] = slices.Clone(v)
	}
	d.Events = events
	m.streams[d.Stream] = append(h, d)
	return nil
}
