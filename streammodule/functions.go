package streammodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/updateops"
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
)

// input is the union of the stream::* inputs. Pointers tell a missing field
// from a zero one.
type input struct {
	StreamName *string         `json:"stream_name"`
	GroupID    *string         `json:"group_id"`
	ItemID     *string         `json:"item_id"`
	Data       json.RawMessage `json:"data"`
	IfSeq      *uint64         `json:"if_seq"`
	Ops        json.RawMessage `json:"ops"`
	Type       *string         `json:"type"`
	ID         *string         `json:"id"`
	Limit      *int            `json:"limit"`
	After      *string         `json:"after"`
	IncludeIDs bool            `json:"include_ids"`
	IncludeSeq bool            `json:"include_seq"`
}

// Register registers the stream::* functions and the stream trigger types
// on e, which also serves the module's own calls (custom streams, triggers).
func (m *Module) Register(e *engine.Engine) error {
	m.e = e
	fns := []struct {
		id, desc string
		h        func(context.Context, engine.Call) ([]byte, error)
	}{
		{FnSet, "Store an item's value.", m.set},
		{FnGet, "Read an item's value.", m.get},
		{FnDelete, "Remove an item.", m.delete},
		{FnList, "List a group's items.", m.list},
		{FnListGroups, "List a stream's groups.", m.listGroups},
		{FnListAll, "List every stream and its groups.", m.listAll},
		{FnSend, "Send an event to a group's subscribers.", m.send},
		{FnUpdate, "Apply update operations to an item, all or none.", m.update},
		{FnRelease, "Give a custom stream whose worker left back to the built-in store.", m.release},
		{FnPresence, "List a group's presence members, across gateways, in pages.", m.presenceFn},
		{FnGroupInfo, "Describe a group: its seq, how full its history is, and resyncs in the last minute; {stream_name, group_id}.", m.groupInfo},
	}
	for _, f := range fns {
		if err := e.RegisterFunction(f.id, f.desc, engine.HandlerFunc(f.h)); err != nil {
			return err
		}
	}
	if err := m.registerGatewayAPI(e); err != nil {
		return err
	}
	e.GuardFunctions("stream::", m.guardCustom)
	return m.trig.register(e)
}

func (m *Module) decode(c engine.Call, need ...string) (input, error) {
	var in input
	if len(c.Payload) == 0 || bytes.Equal(bytes.TrimSpace(c.Payload), []byte("null")) {
		c.Payload = []byte("{}")
	}
	if err := json.Unmarshal(c.Payload, &in); err != nil {
		return in, engine.Errorf(engine.CodeInvalidArgument, "%s: bad input: %v", c.FunctionID, err)
	}
	for _, f := range need {
		var v *string
		switch f {
		case "stream_name":
			v = in.StreamName
		case "group_id":
			v = in.GroupID
		case "item_id":
			v = in.ItemID
		case "type":
			v = in.Type
		case "data":
			if in.Data == nil {
				return in, engine.Errorf(engine.CodeInvalidArgument, "%s: missing field data", c.FunctionID)
			}
			continue
		}
		if v == nil {
			return in, engine.Errorf(engine.CodeInvalidArgument, "%s: missing field %s", c.FunctionID, f)
		}
		if f == "type" {
			continue
		}
		if err := m.checkName(f, *v); err != nil {
			return in, engine.Errorf(engine.CodeInvalidArgument, "%s: %v", c.FunctionID, err)
		}
	}
	if in.Data != nil {
		// Stored and sent compact: frames stay small, and SSE data lines
		// never hold a raw newline.
		var b bytes.Buffer
		if err := json.Compact(&b, in.Data); err != nil {
			return in, engine.Errorf(engine.CodeInvalidArgument, "%s: bad data: %v", c.FunctionID, err)
		}
		in.Data = b.Bytes()
		if err := m.checkSize(c.FunctionID, in.Data); err != nil {
			return in, err
		}
	}
	if in.ID != nil {
		if err := m.checkName("id", *in.ID); err != nil && *in.ID != "" {
			return in, engine.Errorf(engine.CodeInvalidArgument, "%s: %v", c.FunctionID, err)
		}
	}
	return in, nil
}

// checkSize refuses a value over MaxItemBytes before anything is stored.
func (m *Module) checkSize(fn string, v json.RawMessage) error {
	if len(v) > m.maxItem {
		return engine.Errorf(engine.CodeMessageTooLarge, "%s: data is %d bytes, the limit is %d (--stream-max-item-bytes, and the NATS server's max_payload less %d); nothing was written",
			fn, len(v), m.maxItem, m.eventHeadroom())
	}
	return nil
}

func (m *Module) checkName(field, v string) error {
	return store.CheckName(field, v, m.cfg.MaxNameBytes)
}

func (in input) key() store.Key {
	k := store.Key{Stream: *in.StreamName, Group: *in.GroupID}
	if in.ItemID != nil {
		k.Item = *in.ItemID
	}
	return k
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
	in, err := m.decode(c, "stream_name", "group_id", "item_id", "data")
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(*in.StreamName, "set"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.customWrite(ctx, "set", in, c.Payload)
	}
	ch, err := store.PutValue(ctx, m.store, in.key(), store.Cond{IfSeq: in.IfSeq}, in.Data)
	if err != nil {
		return nil, storeError(FnSet, err)
	}
	return engine.MarshalJSON(changeResult{OldValue: orNull(ch.Old), NewValue: ch.Value, Seq: ch.Seq})
}

func (m *Module) update(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := m.decode(c, "stream_name", "group_id", "item_id")
	if err != nil {
		return nil, err
	}
	if in.Ops == nil {
		return nil, engine.Errorf(engine.CodeInvalidArgument, "%s: missing field ops", FnUpdate)
	}
	ops, err := updateops.Decode(in.Ops)
	if err != nil {
		return nil, engine.Errorf(engine.CodeInvalidArgument, "%s: %v", FnUpdate, err)
	}
	switch op, err := m.custom(*in.StreamName, "update", "set"); {
	case err != nil:
		return nil, err
	case op == "update":
		return m.customWrite(ctx, "update", in, c.Payload)
	case op == "set":
		return m.customUpdate(ctx, in, ops)
	}
	ch, err := store.PutOps(ctx, m.store, in.key(), store.Cond{IfSeq: in.IfSeq}, ops, func(v json.RawMessage) error { return m.checkSize(FnUpdate, v) })
	if err != nil {
		return nil, storeError(FnUpdate, err)
	}
	return engine.MarshalJSON(changeResult{OldValue: orNull(ch.Old), NewValue: ch.Value, Seq: ch.Seq})
}

func (m *Module) delete(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := m.decode(c, "stream_name", "group_id", "item_id")
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(*in.StreamName, "delete"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.customWrite(ctx, "delete", in, c.Payload)
	}
	ch, ok, err := m.store.Delete(ctx, in.key(), store.Cond{IfSeq: in.IfSeq})
	if err != nil {
		return nil, storeError(FnDelete, err)
	}
	if !ok {
		return []byte(`{"old_value":null}`), nil
	}
	return engine.MarshalJSON(changeResult{OldValue: orNull(ch.Old), Seq: ch.Seq})
}

func (m *Module) get(ctx context.Context, c engine.Call) ([]byte, error) {
	in, err := m.decode(c, "stream_name", "group_id", "item_id")
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(*in.StreamName, "get"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.callCustom(ctx, op, *in.StreamName, c.Payload)
	}
	it, _, err := m.store.Get(ctx, in.key())
	if err != nil {
		return nil, storeError(FnGet, err)
	}
	if in.IncludeSeq {
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
	in, err := m.decode(c, "stream_name", "group_id")
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(*in.StreamName, "list"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.callCustom(ctx, op, *in.StreamName, c.Payload)
	}
	limit, after, err := store.PageArgs(FnList, in.Limit, in.After)
	if err != nil {
		return nil, err
	}
	paged := in.Limit != nil || in.After != nil
	lists := m.cfg.Lists
	tooLarge := func() error {
		return lists.TooLarge(FnList, fmt.Sprintf("group %q of stream %q", *in.GroupID, *in.StreamName),
			`add "limit" (100, say), and call again with "after": the id of the last item, while "more" is true`)
	}
	return lists.Build(ctx, FnList, tooLarge, func(maxBytes int) ([]byte, error) {
		p, err := m.store.List(ctx, *in.StreamName, *in.GroupID, store.Range{After: after, Limit: limit, MaxBytes: maxBytes, ItemBytes: listItemBytes})
		if err != nil {
			return nil, storeError(FnList, err)
		}
		if !paged && p.More {
			return nil, tooLarge()
		}
		if !paged && !in.IncludeIDs {
			vals := make([]json.RawMessage, len(p.Items))
			for i, it := range p.Items {
				vals[i] = it.Value
			}
			return engine.MarshalJSON(vals)
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
	in, err := m.decode(c, "stream_name")
	if err != nil {
		return nil, err
	}
	if op, err := m.custom(*in.StreamName, "list_groups"); err != nil || op != "" {
		if err != nil {
			return nil, err
		}
		return m.callCustom(ctx, op, *in.StreamName, c.Payload)
	}
	limit, after, err := store.PageArgs(FnListGroups, in.Limit, in.After)
	if err != nil {
		return nil, err
	}
	gs, err := m.store.ListGroups(ctx, *in.StreamName)
	if err != nil {
		return nil, storeError(FnListGroups, err)
	}
	paged := in.Limit != nil || in.After != nil
	gs, more, err := m.cfg.Lists.Names(gs, after, limit, paged, func() error {
		return m.cfg.Lists.TooLarge(FnListGroups, fmt.Sprintf("the list of the groups of stream %q", *in.StreamName),
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
	in, err := m.decode(c)
	if err != nil {
		return nil, err
	}
	limit, after, err := store.PageArgs(FnListAll, in.Limit, in.After)
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
	paged := in.Limit != nil || in.After != nil
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
	in, err := m.decode(c, "stream_name", "group_id", "type", "data")
	if err != nil {
		return nil, err
	}
	k := store.Key{Stream: *in.StreamName, Group: *in.GroupID}
	if in.ID != nil {
		k.Item = *in.ID
	}
	ch, err := m.store.Emit(ctx, store.Change{Key: k, Kind: store.KindEvent, EventType: *in.Type, Value: in.Data})
	if err != nil {
		return nil, storeError(FnSend, err)
	}
	return engine.MarshalJSON(struct {
		Seq uint64 `json:"seq"`
	}{ch.Seq})
}
