package statemodule

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
)

// The state module's function ids, iii's.
const (
	FnSet        = "state::set"
	FnGet        = "state::get"
	FnDelete     = "state::delete"
	FnUpdate     = "state::update"
	FnList       = "state::list"
	FnListGroups = "state::list_groups"
	FnDefine     = "state::define"
	// FnSchema answers a scope's contract and its history.
	FnSchema = "engine::state::schema"
	// FnSchemas answers every scope's contract in force.
	FnSchemas = "engine::state::schemas"
)

// Register registers the state::* functions and the state trigger type on
// e, which also runs the triggers' functions.
func (m *Module) Register(e *engine.Engine) error {
	m.e = e
	if err := e.RegisterFunctions([]engine.Function{
		{ID: FnSet, Description: "Store a value (scope, key, value, if_seq?).", Handle: m.set},
		{ID: FnGet, Description: "Read a value (scope, key, include_seq?); null when missing.", Handle: m.get},
		{ID: FnDelete, Description: "Remove a value (scope, key, if_seq?).", Handle: m.delete},
		{ID: FnUpdate, Description: "Apply update operations to a value, all or none (scope, key, ops, if_seq?).", Handle: m.update},
		{ID: FnList, Description: "List a scope's values (scope; limit?, after? to page).", Handle: m.list},
		{ID: FnListGroups, Description: "List the scopes that hold values.", Handle: m.listGroups},
		{ID: FnDefine, Description: "Define or evolve a scope's contract: {scope, item_schema, version, compatibility?}; every later set and update is checked against it.", Handle: m.define},
		{ID: FnSchema, Description: "A scope's contract in force and every earlier definition; {scope}.", Handle: m.schema},
		{ID: FnSchemas, Description: "Every scope's contract in force, in name order: {scopes: [definition]}.", Handle: m.schemas},
	}); err != nil {
		return err
	}
	return e.RegisterTriggerType(TriggerState, "Runs a function for every state change (config: scope?, key?, condition_function_id?).", provider{m})
}

// result is the result of set, update and delete. Delete gives the removed
// value as old_value and, as iii's engine does, as value.
type result struct {
	OldValue json.RawMessage `json:"old_value"`
	NewValue json.RawMessage `json:"new_value,omitempty"`
	Value    json.RawMessage `json:"value,omitempty"`
	Seq      uint64          `json:"seq,omitempty"`
}

// storeError gives a store failure its engine code.
func storeError(fn string, err error) error {
	return store.CallError(fn, "state", "value", err)
}

func (m *Module) set(ctx context.Context, c engine.Call) ([]byte, error) {
	in, v, err := m.readKey(c)
	if err != nil {
		return nil, err
	}
	value := in.Compact("value")
	if value == nil {
		return nil, in.Missing("value")
	}
	if err := m.checkSize(FnSet, value); err != nil {
		return nil, err
	}
	ct, w, err := m.cfg.Contracts.Begin(ctx, FnSet, v.key.Group)
	if err != nil {
		return nil, err
	}
	defer w.Done()
	if err := contracts.Check(FnSet, ct, value); err != nil {
		return nil, err
	}
	if m.beforeCommit != nil {
		m.beforeCommit(v.key)
	}
	ch, err := store.PutValue(ctx, m.store, v.key, store.Cond{IfSeq: v.ifSeq}, value)
	if err != nil {
		return nil, storeError(FnSet, err)
	}
	return store.AppendChange(make([]byte, 0, 48+len(ch.Old)+len(ch.Value)), ch.Old, ch.Value, ch.Seq), nil
}

func (m *Module) update(ctx context.Context, c engine.Call) ([]byte, error) {
	in, v, err := m.readKey(c)
	if err != nil {
		return nil, err
	}
	ops, err := store.ReadOps(FnUpdate, in)
	if err != nil {
		return nil, err
	}
	ct, w, err := m.cfg.Contracts.Begin(ctx, FnUpdate, v.key.Group)
	if err != nil {
		return nil, err
	}
	defer w.Done()
	ch, err := store.PutOps(ctx, m.store, v.key, store.Cond{IfSeq: v.ifSeq}, ops, func(nv json.RawMessage) error {
		if err := m.checkSize(FnUpdate, nv); err != nil {
			return err
		}
		return contracts.Check(FnUpdate, ct, nv)
	})
	if err != nil {
		return nil, storeError(FnUpdate, err)
	}
	return store.AppendChange(nil, ch.Old, ch.Value, ch.Seq), nil
}

func (m *Module) delete(ctx context.Context, c engine.Call) ([]byte, error) {
	_, v, err := m.readKey(c)
	if err != nil {
		return nil, err
	}
	ch, ok, err := m.store.Delete(ctx, v.key, store.Cond{IfSeq: v.ifSeq})
	if err != nil {
		return nil, storeError(FnDelete, err)
	}
	if !ok {
		return []byte(`{"old_value":null,"value":null}`), nil
	}
	return engine.MarshalJSON(result{OldValue: orNull(ch.Value), Value: orNull(ch.Value), Seq: ch.Seq})
}

// seqItem is state::get's result with include_seq, and a row of a paged
// state::list.
type seqItem struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
	Seq   uint64          `json:"seq"`
}

func (m *Module) get(ctx context.Context, c engine.Call) ([]byte, error) {
	in, v, err := m.readKey(c)
	if err != nil {
		return nil, err
	}
	includeSeq, err := in.Bool("include_seq")
	if err != nil {
		return nil, err
	}
	it, _, err := m.store.Get(ctx, v.key)
	if err != nil {
		return nil, storeError(FnGet, err)
	}
	if includeSeq {
		return engine.MarshalJSON(seqItem{Key: v.key.Item, Value: orNull(it.Value), Seq: it.Seq})
	}
	return orNull(it.Value), nil
}

func (m *Module) list(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return nil, err
	}
	scope, err := m.readName(in, "scope")
	if err != nil {
		return nil, err
	}
	limit, after, paged, err := store.ReadPage(FnList, in)
	if err != nil {
		return nil, err
	}
	lists := m.cfg.Lists
	tooLarge := func() error {
		return lists.TooLarge(FnList, fmt.Sprintf("scope %q", scope),
			`add "limit" (100, say): the answer becomes {"items": [{"key", "value", "seq"}...], "seq", "more"}; call again with "after": the key of the last item, while "more" is true`)
	}
	return lists.Build(ctx, FnList, tooLarge, func(maxBytes int) ([]byte, error) {
		p, err := m.store.List(ctx, storeStream, scope, store.Range{After: after, Limit: limit, MaxBytes: maxBytes, ItemBytes: listItemBytes})
		if err != nil {
			return nil, storeError(FnList, err)
		}
		if !paged {
			if p.More {
				return nil, tooLarge()
			}
			return store.MarshalValues(p.Items)
		}
		items := make([]seqItem, len(p.Items))
		for i, it := range p.Items {
			items[i] = seqItem{Key: it.ID, Value: it.Value, Seq: it.Seq}
		}
		return engine.MarshalJSON(struct {
			Items []seqItem `json:"items"`
			Seq   uint64    `json:"seq"`
			More  bool      `json:"more"`
		}{items, p.Seq, p.More})
	})
}

// listItemBytes is what an item of a paged state::list adds besides its
// key and value, at most: {"key":"","value":,"seq":18446744073709551615},
const listItemBytes = 48

func (m *Module) listGroups(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return nil, err
	}
	limit, after, paged, err := store.ReadPage(FnListGroups, in)
	if err != nil {
		return nil, err
	}
	gs, err := m.store.ListGroups(ctx, storeStream)
	if err != nil {
		return nil, storeError(FnListGroups, err)
	}
	gs, more, err := m.cfg.Lists.Names(gs, after, limit, paged, func() error {
		return m.cfg.Lists.TooLarge(FnListGroups, "the list of scopes",
			`add "limit" (1000, say): the answer gains "more": bool; call again with "after": the last scope, while "more" is true`)
	})
	if err != nil {
		return nil, err
	}
	res := struct {
		Groups []string `json:"groups"`
		More   *bool    `json:"more,omitempty"`
	}{Groups: gs}
	if paged {
		res.More = &more
	}
	return engine.MarshalJSON(res)
}

// keyInput names a value and the sequence a write is conditional on: the
// input of get, set, delete and update.
type keyInput struct {
	key   store.Key
	ifSeq *uint64
}

// readKey reads scope, key and if_seq, checking the names.
func (m *Module) readKey(c engine.Call) (engine.Input, keyInput, error) {
	var v keyInput
	in, err := engine.ReadInput(c)
	if err != nil {
		return in, v, err
	}
	v.key.Stream = storeStream
	if v.key.Group, err = m.readName(in, "scope"); err != nil {
		return in, v, err
	}
	if v.key.Item, err = m.readName(in, "key"); err != nil {
		return in, v, err
	}
	v.ifSeq, err = in.Uint64("if_seq")
	return in, v, err
}

// readName reads a required name field and checks it.
func (m *Module) readName(in engine.Input, field string) (string, error) {
	return store.ReadName(in, field, m.cfg.MaxNameBytes)
}

// define checks and stores a new contract of a scope.
func (m *Module) define(ctx context.Context, c engine.Call) ([]byte, error) {
	return m.cfg.Contracts.DefineCall(ctx, c, "scope", m.readName, false, m.evolveTarget())
}

// scopeDefinition is a scope's contract.Definition, as state's functions
// answer it: the name is the scope.
type scopeDefinition struct {
	Scope   string          `json:"scope"`
	Version uint64          `json:"version"`
	Mode    contract.Mode   `json:"compatibility,omitempty"`
	Item    json.RawMessage `json:"item_schema"`
}

func ofScope(d contract.Definition) scopeDefinition {
	return scopeDefinition{Scope: d.Stream, Version: d.Version, Mode: d.Mode, Item: d.Item}
}

// schema answers engine::state::schema: {scope, current, history}.
func (m *Module) schema(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return nil, err
	}
	scope, err := m.readName(in, "scope")
	if err != nil {
		return nil, err
	}
	s, err := m.cfg.Contracts.Schema(ctx, scope)
	if err != nil {
		return nil, contracts.Refused(FnSchema, err, "")
	}
	out := struct {
		Scope   string            `json:"scope"`
		Current *scopeDefinition  `json:"current"`
		History []scopeDefinition `json:"history"`
	}{Scope: scope, History: make([]scopeDefinition, len(s.History))}
	for i, d := range s.History {
		out.History[i] = ofScope(d)
	}
	if s.Current != nil {
		cur := ofScope(*s.Current)
		out.Current = &cur
	}
	return engine.MarshalJSON(out)
}

// schemas answers engine::state::schemas: {scopes: [definition]}.
func (m *Module) schemas(ctx context.Context, _ engine.Call) ([]byte, error) {
	defs, err := m.cfg.Contracts.Current(ctx, func(string) bool { return true })
	if err != nil {
		return nil, contracts.Refused(FnSchemas, err, "")
	}
	out := make([]scopeDefinition, len(defs))
	for i, d := range defs {
		out[i] = ofScope(d)
	}
	return engine.MarshalJSON(map[string]any{"scopes": out})
}

// evolveTarget is what a new version of a scope's contract is checked
// against: the scope's values (state keeps no history).
func (m *Module) evolveTarget() *contracts.Target {
	t := &contracts.Target{
		Store:         m.store,
		MaxValueBytes: m.maxValue,
		Groups: func(_ context.Context, scope string) ([]store.Key, error) {
			return []store.Key{{Stream: storeStream, Group: scope}}, nil
		},
		Describe: func(scope string, k store.Key) map[string]any {
			return map[string]any{"scope": scope, "key": k.Item}
		},
	}
	if m.e != nil {
		t.Call = contracts.CallAs(m.e)
	}
	return t
}
