package streammodule

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/updateops"
)

// A custom stream is served by a worker: it registers
// stream::<op>(<stream_name>) for get, set, delete, list, list_groups and
// optionally update. The module calls those with the same input as the
// built-in function and still sequences and publishes the changes.

// CustomFunctionID is the id a worker registers to serve op of a stream.
func CustomFunctionID(op, stream string) string {
	return "stream::" + op + "(" + stream + ")"
}

// custom returns the first of ops that a worker serves for stream, or "".
// A stream that was custom once never falls back to the built-in store
// while this engine runs: with its worker gone, calls fail unavailable
// instead of splitting its state in two. The engine pushes the custom
// functions as they come and go (watchCustom): no call asks it.
func (m *Module) custom(stream string, ops ...string) (string, error) {
	m.customMu.RLock()
	served, was := m.served[stream], false
	found := ""
	for _, op := range ops {
		if served[op] {
			found = op
			break
		}
	}
	if found == "" {
		_, was = m.customs[stream]
	}
	m.customMu.RUnlock()
	if found != "" {
		if !was {
			m.customMu.Lock()
			m.customs[stream] = struct{}{}
			m.customMu.Unlock()
		}
		return found, nil
	}
	if was {
		return "", engine.Errorf(codes.Unavailable, "stream %q is a custom stream and no worker serves stream::%s for it now (its worker left); calls resume when one registers it again, and stream::release {\"stream_name\": %q} gives the name back to the built-in store", stream, ops[0], stream)
	}
	return "", nil
}

// watchCustom keeps m.served: the custom operations a worker serves, by
// stream. The engine calls it under its lock as they come and go.
func (m *Module) watchCustom(id string, served bool) {
	op, stream, ok := parseCustomOp(id)
	if !ok {
		return
	}
	m.customMu.Lock()
	defer m.customMu.Unlock()
	ops := m.served[stream]
	if served {
		if ops == nil {
			ops = make(map[string]bool)
			m.served[stream] = ops
		}
		ops[op] = true
		return
	}
	delete(ops, op)
	if len(ops) == 0 {
		delete(m.served, stream)
	}
}

// customOps are the operations a worker may serve for a custom stream.
var customOps = []string{"get", "set", "delete", "list", "list_groups", "update"}

// guardCustom refuses a worker's stream::<op>(<stream>) when the stream
// holds items in the built-in store: registering a function name must not
// take over a stream that exists (its data would vanish behind the
// worker's, and come back when the worker leaves).
func (m *Module) guardCustom(id string) error {
	stream, ok := parseCustomID(id)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := m.store.ListGroups(ctx, stream)
	if err != nil {
		return engine.Errorf(codes.Unavailable, "cannot check stream %q before %s: %v", stream, id, err)
	}
	if len(groups) > 0 {
		return engine.Errorf(codes.Conflict, "stream %q holds items in the built-in store (%d groups): a worker cannot serve it as a custom stream; use another stream name", stream, len(groups))
	}
	return nil
}

// parseCustomID inverts CustomFunctionID for the custom operations.
func parseCustomID(id string) (stream string, ok bool) {
	_, stream, ok = parseCustomOp(id)
	return stream, ok
}

// parseCustomOp inverts CustomFunctionID for the custom operations.
func parseCustomOp(id string) (op, stream string, ok bool) {
	for _, op := range customOps {
		prefix := "stream::" + op + "("
		if strings.HasPrefix(id, prefix) && strings.HasSuffix(id, ")") {
			return op, id[len(prefix) : len(id)-1], true
		}
	}
	return "", "", false
}

// release is stream::release {stream_name}: a custom stream whose worker
// left goes back to the built-in store.
func (m *Module) release(_ context.Context, c engine.Call) ([]byte, error) {
	in, err := engine.ReadInput(c)
	if err != nil {
		return nil, err
	}
	name, err := m.readName(in, "stream_name")
	if err != nil {
		return nil, err
	}
	for _, op := range customOps {
		if m.e.HasFunction(CustomFunctionID(op, name)) {
			return nil, engine.Errorf(codes.Conflict, "stream %q is served by a worker (%s): it cannot be released", name, CustomFunctionID(op, name))
		}
	}
	m.customMu.Lock()
	_, was := m.customs[name]
	delete(m.customs, name)
	m.customMu.Unlock()
	return engine.MarshalJSON(map[string]bool{"released": was})
}

// noIfSeq refuses if_seq on a custom stream: its worker keeps no sequences.
func noIfSeq(it itemInput) error {
	if it.ifSeq != nil {
		return engine.Errorf(codes.InvalidArgument, "if_seq is not supported by custom stream %q", it.key.Stream)
	}
	return nil
}

func (m *Module) callCustom(ctx context.Context, op, stream string, payload []byte) ([]byte, error) {
	return m.e.Trigger(ctx, engine.Call{FunctionID: CustomFunctionID(op, stream), Payload: payload})
}

// customWrite delegates set, update or delete to the stream's worker and
// commits the change it reports.
func (m *Module) customWrite(ctx context.Context, op string, in itemInput, payload []byte) ([]byte, error) {
	if err := noIfSeq(in); err != nil {
		return nil, err
	}
	out, err := m.callCustom(ctx, op, in.key.Stream, payload)
	if err != nil {
		return nil, err
	}
	var r changeResult
	if len(bytes.TrimSpace(out)) == 0 || json.Unmarshal(out, &r) != nil || (op != "delete" && r.NewValue == nil) {
		return nil, engine.Errorf(codes.HandlerError, "%s returned %.200q, want {old_value, new_value}", CustomFunctionID(op, in.key.Stream), out)
	}
	return m.commitCustom(ctx, in, r)
}

func isNull(v json.RawMessage) bool {
	return v == nil || bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

func (m *Module) commitCustom(ctx context.Context, in itemInput, r changeResult) ([]byte, error) {
	c := store.Change{Key: in.key, Kind: store.KindUpdate, Old: r.OldValue, Value: r.NewValue}
	switch {
	case r.NewValue == nil: // delete
		if isNull(r.OldValue) {
			return []byte(`{"old_value":null}`), nil
		}
		c.Kind, c.Value = store.KindDelete, r.OldValue
	case isNull(r.OldValue):
		c.Kind, c.Old = store.KindCreate, nil
	}
	ch, err := m.store.Emit(ctx, c)
	if err != nil {
		return nil, storeError("stream::"+c.Kind.String(), err)
	}
	r.OldValue, r.Seq = orNull(r.OldValue), ch.Seq
	return engine.MarshalJSON(r)
}

// customUpdate serves stream::update for a custom stream without an update
// function: it reads with the stream's get, applies the ops and writes with
// its set. Unlike the built-in store this is not atomic against other
// writers of the same item.
func (m *Module) customUpdate(ctx context.Context, c engine.Call, in itemInput, ops []updateops.Op) ([]byte, error) {
	if err := noIfSeq(in); err != nil {
		return nil, err
	}
	k := in.key
	get, err := engine.MarshalJSON(map[string]string{"stream_name": k.Stream, "group_id": k.Group, "item_id": k.Item})
	if err != nil {
		return nil, err
	}
	cur, err := m.callCustom(ctx, "get", k.Stream, get)
	if err != nil {
		return nil, err
	}
	exists := !isNull(cur)
	next, err := updateops.Apply(cur, exists, ops)
	if err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "%s: %v; nothing was written", FnUpdate, err)
	}
	w, err := m.checkItem(ctx, c, FnUpdate, k, next)
	if err != nil {
		return nil, err
	}
	w.Done() // no re-check reads a custom stream's items
	set, err := engine.MarshalJSON(map[string]any{"stream_name": k.Stream, "group_id": k.Group, "item_id": k.Item, "data": next})
	if err != nil {
		return nil, err
	}
	return m.customWrite(ctx, "set", in, set)
}
