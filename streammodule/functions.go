package streammodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
)

// listItemBytes is what an item adds to a list answer besides its id and
// value, at most: {"key":"","value":,"seq":18446744073709551615},
const listItemBytes = 48

// The StreamModule's function ids.
const (
	FnSet        = "stream::set"
	FnGet        = "stream::get"
	FnDelete     = "stream::delete"
	FnList       = "stream::list"
	FnListGroups = "stream::list_groups"
	FnListAll    = "stream::list_all"
	FnSend       = "stream::send"
	FnUpdate     = "stream::update"
	FnRelease    = "stream::release"
	FnDefine     = "stream::define"
	// FnSchema answers a stream's contract and its history.
	FnSchema = "engine::streams::schema"
	// FnSchemas answers every stream's contract in force.
	FnSchemas = "engine::streams::schemas"
)

// Register registers the stream::* functions and the stream trigger types
// on e, which also serves the module's own calls (custom streams, triggers).
func (m *Module) Register(e *engine.Engine) error {
	m.e = e
	if err := e.RegisterFunctions([]engine.Function{
		{ID: FnSet, Description: "Store an item's value.", Handle: m.set},
		{ID: FnGet, Description: "Read an item's value.", Handle: m.get},
		{ID: FnDelete, Description: "Remove an item.", Handle: m.delete},
		{ID: FnList, Description: "List a group's items.", Handle: m.list},
		{ID: FnListGroups, Description: "List a stream's groups.", Handle: m.listGroups},
		{ID: FnListAll, Description: "List every stream and its groups.", Handle: m.listAll},
		{ID: FnSend, Description: "Send an event to a group's subscribers.", Handle: m.send},
		{ID: FnUpdate, Description: "Apply update operations to an item, all or none.", Handle: m.update},
		{ID: FnRelease, Description: "Give a custom stream whose worker left back to the built-in store.", Handle: m.release},
		{ID: FnPresence, Description: "List a group's presence members, across gateways, in pages.", Handle: m.presenceFn},
		{ID: FnDefine, Description: "Define or evolve a stream's contract: {stream_name, item_schema, event_schemas?, version, compatibility?}; every later write is checked against it.", Handle: m.define},
		{ID: FnSchema, Description: "A stream's contract in force and every earlier definition; {stream_name}.", Handle: m.schema},
		{ID: FnSchemas, Description: "Every stream's contract in force, in name order: {streams: [definition]}; {limit?, after?} in pages ({streams, more}), {stream_names?} only those.", Handle: m.schemas},
		{ID: FnGroupInfo, Description: "Describe a group: its seq, how full its history is, and resyncs in the last minute; {stream_name, group_id}.", Handle: m.groupInfo},
	}); err != nil {
		return err
	}
	if err := m.registerContractViews(e); err != nil {
		return err
	}
	if err := m.registerGatewayAPI(e); err != nil {
		return err
	}
	e.GuardFunctions("stream::", m.guardCustom)
	e.WatchFunctions("stream::", m.watchCustom)
	return m.trig.register(e)
}

// checkSize refuses a value over MaxItemBytes before anything is stored.
func (m *Module) checkSize(fn string, v json.RawMessage) error {
	if len(v) > m.maxItem {
		return engine.Errorf(codes.MessageTooLarge, "%s: data is %d bytes, the limit is %d (--stream-max-item-bytes, and the NATS server's max_payload less %d); nothing was written",
			fn, len(v), m.maxItem, m.eventHeadroom())
	}
	return nil
}

// readStream reads a call's input and its stream_name.
func (m *Module) readStream(c engine.Call) (engine.Input, string, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return in, "", err
	}
	stream, err := m.readName(in, "stream_name")
	return in, stream, err
}

func (m *Module) checkName(field, v string) error {
	return store.CheckName(field, v, m.cfg.MaxNameBytes)
}

// storeError gives a store failure its engine code.
func storeError(fn string, err error) error { return store.CallError(fn, "stream", "item", err) }

// changeResult is the result of set, update and delete.
type changeResult struct {
	OldValue json.RawMessage `json:"old_value"`
	NewValue json.RawMessage `json:"new_value,omitempty"`
	Seq      uint64          `json:"seq,omitempty"`
}

func orNull(v json.RawMessage) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	return v
}

func (m *Module) set(ctx context.Context, c engine.Call) ([]byte, error) {
	in, it, err := m.readItem(c, true)
	if err != nil {
		return nil, err
	}
	data, err := m.readData(in, FnSet)
	if err != nil {
		return nil, err
	}
	w, err := m.checkItem(ctx, c, FnSet, it.key, data)
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(it.key.Stream, "set"); err != nil || op != "" {
		// A worker holds a custom stream's items, which no re-check reads:
		// no definition waits for its call.
		w.Done()
		if err != nil {
			return nil, err
		}
		return m.customWrite(ctx, "set", it, c.Payload)
	}
	defer w.Done()
	if m.beforeCommit != nil {
		m.beforeCommit(it.key)
	}
	ctx, span := m.startCommit(ctx, FnSet, it.key)
	ch, err := store.PutValue(ctx, m.store, it.key, store.Cond{IfSeq: it.ifSeq}, data)
	endCommit(span, FnSet, ch.Seq, err)
	if err != nil {
		return nil, storeError(FnSet, err)
	}
	return store.AppendChange(make([]byte, 0, 48+len(ch.Old)+len(ch.Value)), ch.Old, ch.Value, ch.Seq), nil
}

func (m *Module) update(ctx context.Context, c engine.Call) ([]byte, error) {
	in, it, err := m.readItem(c, true)
	if err != nil {
		return nil, err
	}
	ops, err := store.ReadOps(FnUpdate, in)
	if err != nil {
		return nil, err
	}
	ct, w, err := m.cfg.Contracts.Begin(ctx, FnUpdate, it.key.Stream)
	if err != nil {
		return nil, err
	}
	// Before a custom stream's worker is called too: it is trusted with
	// the value it computes, not with the group.
	if err := contracts.CheckGroup(FnUpdate, ct, it.key.Group, "nothing was written"); err != nil {
		w.Done()
		return nil, m.refused(c, FnUpdate, ct, it.key, "", err)
	}
	if op, err := m.custom(it.key.Stream, "update", "set"); err != nil || op != "" {
		// A worker holds a custom stream's items, which no re-check reads:
		// no definition waits for its call.
		w.Done()
		switch {
		case err != nil:
			return nil, err
		case op == "update":
			return m.customWrite(ctx, "update", it, c.Payload)
		default:
			return m.customUpdate(ctx, c, it, ops)
		}
	}
	defer w.Done()
	var refusal error // the contract's refusal of the result, if that is why the write failed
	ctx, span := m.startCommit(ctx, FnUpdate, it.key)
	ch, err := store.PutOps(ctx, m.store, it.key, store.Cond{IfSeq: it.ifSeq}, ops, func(v json.RawMessage) error {
		refusal = nil
		if err := m.checkSize(FnUpdate, v); err != nil {
			return err
		}
		refusal = contracts.Check(FnUpdate, ct, v)
		return refusal
	})
	endCommit(span, FnUpdate, ch.Seq, err)
	if err != nil {
		if refusal != nil {
			m.refused(c, FnUpdate, ct, it.key, "", refusal)
		}
		return nil, storeError(FnUpdate, err)
	}
	return store.AppendChange(nil, ch.Old, ch.Value, ch.Seq), nil
}

func (m *Module) delete(ctx context.Context, c engine.Call) ([]byte, error) {
	_, it, err := m.readItem(c, true)
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(it.key.Stream, "delete"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.customWrite(ctx, "delete", it, c.Payload)
	}
	ctx, span := m.startCommit(ctx, FnDelete, it.key)
	ch, ok, err := m.store.Delete(ctx, it.key, store.Cond{IfSeq: it.ifSeq})
	endCommit(span, FnDelete, ch.Seq, err)
	if err != nil {
		return nil, storeError(FnDelete, err)
	}
	if !ok {
		return []byte(`{"old_value":null}`), nil
	}
	return store.AppendChange(nil, ch.Old, nil, ch.Seq), nil
}

func (m *Module) get(ctx context.Context, c engine.Call) ([]byte, error) {
	in, item, err := m.readItem(c, true)
	if err != nil {
		return nil, err
	}
	includeSeq, err := in.Bool("include_seq")
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(item.key.Stream, "get"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.callCustom(ctx, op, item.key.Stream, c.Payload)
	}
	it, _, err := m.store.Get(ctx, item.key)
	if err != nil {
		return nil, storeError(FnGet, err)
	}
	if includeSeq {
		it.Value = orNull(it.Value)
		return engine.MarshalJSON(it)
	}
	return orNull(it.Value), nil
}

// pageResult is stream::list's result when it pages or includes ids.
type pageResult struct {
	Items []store.Item `json:"items"`
	Seq   uint64       `json:"seq"`
	More  bool         `json:"more"`
}

func (m *Module) list(ctx context.Context, c engine.Call) ([]byte, error) {
	in, it, err := m.readItem(c, false)
	if err != nil {
		return nil, err
	}
	stream, group := it.key.Stream, it.key.Group
	if op, err := m.custom(stream, "list"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.callCustom(ctx, op, stream, c.Payload)
	}
	limit, after, paged, err := store.ReadPage(FnList, in)
	if err != nil {
		return nil, err
	}
	includeIDs, err := in.Bool("include_ids")
	if err != nil {
		return nil, err
	}
	lists := m.cfg.Lists
	tooLarge := func() error {
		return lists.TooLarge(FnList, fmt.Sprintf("group %q of stream %q", group, stream),
			`add "limit" (100, say), and call again with "after": the id of the last item, while "more" is true`)
	}
	return lists.Build(ctx, FnList, tooLarge, func(maxBytes int) ([]byte, error) {
		p, err := m.store.List(ctx, stream, group, store.Range{After: after, Limit: limit, MaxBytes: maxBytes, ItemBytes: listItemBytes})
		if err != nil {
			return nil, storeError(FnList, err)
		}
		if !paged && p.More {
			return nil, tooLarge()
		}
		if !paged && !includeIDs {
			return store.MarshalValues(p.Items)
		}
		return engine.MarshalJSON(pageResult{Items: p.Items, Seq: p.Seq, More: p.More})
	})
}

// groupsPage is stream::list_groups' result when it pages.
type groupsPage struct {
	Groups []string `json:"groups"`
	More   bool     `json:"more"`
}

func (m *Module) listGroups(ctx context.Context, c engine.Call) ([]byte, error) {
	in, stream, err := m.readStream(c)
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(stream, "list_groups"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.callCustom(ctx, op, stream, c.Payload)
	}
	limit, after, paged, err := store.ReadPage(FnListGroups, in)
	if err != nil {
		return nil, err
	}
	gs, err := m.store.ListGroups(ctx, stream)
	if err != nil {
		return nil, storeError(FnListGroups, err)
	}
	gs, more, err := m.cfg.Lists.Names(gs, after, limit, paged, func() error {
		return m.cfg.Lists.TooLarge(FnListGroups, fmt.Sprintf("the list of the groups of stream %q", stream),
			`add "limit" (1000, say): the answer becomes {"groups": [...], "more": bool}; call again with "after": the last group, while "more" is true`)
	})
	if err != nil {
		return nil, err
	}
	if paged {
		return engine.MarshalJSON(groupsPage{gs, more})
	}
	return engine.MarshalJSON(gs)
}

func (m *Module) listAll(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return nil, err
	}
	limit, after, paged, err := store.ReadPage(FnListAll, in)
	if err != nil {
		return nil, err
	}
	all, err := m.store.ListAll(ctx)
	if err != nil {
		return nil, storeError(FnListAll, err)
	}
	// Each stream counts as its id and its groups' names.
	size, out, more := 2, []store.StreamGroups{}, false
	for _, sg := range all {
		if after != "" && sg.ID <= after {
			continue
		}
		n := len(sg.ID) + 24
		for _, g := range sg.Groups {
			n += len(g) + 8
		}
		if (limit > 0 && len(out) == limit) || (len(out) > 0 && size+n > m.cfg.Lists.MaxBytes()) {
			more = true
			break
		}
		out, size = append(out, sg), size+n
	}
	if more && !paged {
		return nil, m.cfg.Lists.TooLarge(FnListAll, "the list of streams and their groups",
			`add "limit" (100, say): the answer gains "more": bool; call again with "after": the id of the last stream, while "more" is true`)
	}
	res := struct {
		Stream []store.StreamGroups `json:"stream"`
		Count  int                  `json:"count"`
		More   *bool                `json:"more,omitempty"`
	}{Stream: out, Count: len(out)}
	if paged {
		res.More = &more
	}
	return engine.MarshalJSON(res)
}

func (m *Module) send(ctx context.Context, c engine.Call) ([]byte, error) {
	in, it, err := m.readItem(c, false)
	if err != nil {
		return nil, err
	}
	typ, ok, err := in.String("type")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, in.Missing("type")
	}
	data, err := m.readData(in, FnSend)
	if err != nil {
		return nil, err
	}
	id, _, err := in.String("id")
	if err != nil {
		return nil, err
	}
	if id != "" {
		if err := m.checkName("id", id); err != nil {
			return nil, in.Invalid(err)
		}
	}
	it.key.Item = id
	ct, w, err := m.cfg.Contracts.Begin(ctx, FnSend, it.key.Stream)
	if err != nil {
		return nil, err
	}
	defer w.Done()
	if err := contracts.CheckGroup(FnSend, ct, it.key.Group, "nothing was sent"); err != nil {
		return nil, m.refused(c, FnSend, ct, it.key, typ, err)
	}
	if ct != nil {
		if err := ct.ValidateEvent(typ, data); err != nil {
			return nil, m.refused(c, FnSend, ct, it.key, typ, contracts.Refused(FnSend, err, "nothing was sent"))
		}
	}
	ctx, span := m.startCommit(ctx, FnSend, it.key)
	ch, err := m.store.Emit(ctx, store.Change{Key: it.key, Kind: store.KindEvent, EventType: typ, Value: data})
	endCommit(span, FnSend, ch.Seq, err)
	if err != nil {
		return nil, storeError(FnSend, err)
	}
	return engine.MarshalJSON(struct {
		Seq uint64 `json:"seq"`
	}{ch.Seq})
}

// checkItem refuses an item value the stream's contract does not accept,
// for a write by call c of function fn to k, and records the refusal; the
// write it begins is done when its Done is called, once committed.
func (m *Module) checkItem(ctx context.Context, c engine.Call, fn string, k store.Key, v json.RawMessage) (contracts.Write, error) {
	ct, w, err := m.cfg.Contracts.Begin(ctx, fn, k.Stream)
	if err != nil {
		return w, err
	}
	if err := contracts.CheckGroup(fn, ct, k.Group, "nothing was written"); err != nil {
		w.Done()
		return contracts.Write{}, m.refused(c, fn, ct, k, "", err)
	}
	if err := contracts.Check(fn, ct, v); err != nil {
		w.Done()
		return contracts.Write{}, m.refused(c, fn, ct, k, "", err)
	}
	return w, nil
}

// ContractPublisher is a Publisher that also tells the gateways of a
// stream's new contract (natsfanout.Publisher), so that they send its
// subscribers a schema frame.
type ContractPublisher interface {
	PublishContract(stream string, version uint64) error
}

// define checks and stores a new contract of a stream, and tells the
// gateways.
func (m *Module) define(ctx context.Context, c engine.Call) ([]byte, error) {
	out, err := m.cfg.Contracts.DefineCall(ctx, c, "stream_name", m.readName, true, m.evolveTarget())
	if p, ok := m.cfg.Publisher.(ContractPublisher); ok && err == nil {
		var d struct {
			Stream  string `json:"stream_name"`
			Version uint64 `json:"version"`
		}
		if json.Unmarshal(out, &d) == nil {
			if perr := p.PublishContract(d.Stream, d.Version); perr != nil {
				m.log.Warn("stream contract notice not published", "stream", d.Stream, "error", perr)
			}
		}
	}
	return out, err
}

// schemas answers engine::streams::schemas.
func (m *Module) schemas(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return nil, err
	}
	limit, after, paged, err := store.ReadPage(FnSchemas, in)
	if err != nil {
		return nil, err
	}
	allows := func(string) bool { return true }
	if raw := in.Raw("stream_names"); raw != nil && string(raw) != "null" {
		var names []string
		if err := json.Unmarshal(raw, &names); err != nil {
			return nil, in.Invalid(errors.New("stream_names must be an array of stream names"))
		}
		allows = func(n string) bool { return slices.Contains(names, n) }
	}
	tooLarge := func() error {
		return m.cfg.Lists.TooLarge(FnSchemas, "the list of the streams' contracts",
			`add "limit" (100, say): the answer becomes {"streams": [...], "more": bool}; call again with "after": the last stream_name, while "more" is true; or name the streams in "stream_names"`)
	}
	return m.cfg.Lists.Build(ctx, FnSchemas, tooLarge, func(maxBytes int) ([]byte, error) {
		defs, more, err := m.cfg.Contracts.Page(ctx, allows, after, limit, maxBytes)
		switch {
		case err != nil:
			return nil, contracts.Refused(FnSchemas, err, "")
		case paged:
			return engine.MarshalJSON(map[string]any{"streams": defs, "more": more})
		case more:
			return nil, tooLarge()
		}
		return engine.MarshalJSON(map[string]any{"streams": defs})
	})
}

// schema answers engine::streams::schema.
func (m *Module) schema(ctx context.Context, c engine.Call) ([]byte, error) {
	_, stream, err := m.readStream(c)
	if err != nil {
		return nil, err
	}
	s, err := m.cfg.Contracts.Schema(ctx, stream)
	if err != nil {
		return nil, contracts.Refused(FnSchema, err, "")
	}
	return engine.MarshalJSON(s)
}
