package trine

import (
	"context"
	"encoding/json"
	"fmt"
)

// StreamBackend serves a custom stream's storage. Values are raw JSON. Its
// methods may be called concurrently, one call per invocation.
type StreamBackend interface {
	// Get returns the item's value, or nil when it is missing.
	Get(ctx context.Context, group, id string) (json.RawMessage, error)
	// Set stores v and returns the previous value, nil when there was none.
	Set(ctx context.Context, group, id string, v json.RawMessage) (old json.RawMessage, err error)
	// Delete removes the item and returns its value, nil when there was
	// none.
	Delete(ctx context.Context, group, id string) (old json.RawMessage, err error)
	// List returns the values of the group's items.
	List(ctx context.Context, group string) ([]json.RawMessage, error)
	// ListGroups returns the ids of the stream's groups.
	ListGroups(ctx context.Context) ([]string, error)
}

// The operations a custom stream serves. The engine runs stream::update as
// a get, the ops and a set.
var customStreamOps = []string{"get", "list", "list_groups", "set", "delete"}

// customStreamFunctionID is the id of the function serving op of a custom
// stream, as the engine's StreamModule looks it up.
func customStreamFunctionID(op, stream string) string {
	return "stream::" + op + "(" + stream + ")"
}

// ServeStream makes this worker the storage of the stream name: it registers
// the functions stream::<op>(<name>) for get, list, list_groups, set and
// delete, which the engine's stream::* functions call for that stream while
// they are registered. The engine still sequences and publishes every
// change. Like RegisterFunction, it waits for the engine's acknowledgements
// and the registrations are replayed after a reconnect; if the engine
// refuses one, those already made are withdrawn and the error is returned.
//
// A backend cannot check sequences, so writes with if_seq are refused with
// code invalid_argument. The engine answers stream::get and stream::list of
// a custom stream with the backend's values alone (no ids, sequences or
// paging), so Stream's Get and List fail on it with code internal; its
// Set, Update, Delete, Groups and Send work.
func (w *Worker) ServeStream(ctx context.Context, name string, b StreamBackend) error {
	if name == "" {
		return errorf(CodeInvalidArgument, "serve stream: the stream name is empty")
	}
	if b == nil {
		return errorf(CodeInvalidArgument, "serve stream %q: no backend", name)
	}
	if w.initErr != nil {
		return w.initErr
	}
	cs := &customStream{name: name, b: b}
	handlers := map[string]Handler{"get": cs.get, "list": cs.list, "list_groups": cs.listGroups, "set": cs.set, "delete": cs.delete}
	fns := make([]*function, len(customStreamOps))
	for i, op := range customStreamOps {
		fns[i] = &function{
			id:          customStreamFunctionID(op, name),
			description: fmt.Sprintf("Custom stream %q: %s.", name, op),
			handler:     handlers[op],
		}
	}
	w.mu.Lock() // store them all first, so that a replay sends every one
	for _, f := range fns {
		w.functions[f.id] = f
	}
	w.mu.Unlock()
	for i, f := range fns {
		err := w.register(ctx, f.frame, nil)
		if err == nil {
			continue
		}
		if refused(err) {
			for j, g := range fns {
				w.forgetFunction(g.id, g)
				if j < i {
					if uerr := w.register(ctx, unregisterFunctionFrame(g.id), nil); uerr != nil {
						w.log.Warn("withdraw custom stream function", "function_id", g.id, "error", uerr)
					}
				}
			}
		}
		return fmt.Errorf("serve stream %q: register %s: %w", name, f.id, err)
	}
	return nil
}

// customStream adapts a StreamBackend to the custom stream functions.
type customStream struct {
	name string
	b    StreamBackend
}

// customInput is the input the engine passes to a custom stream function:
// the same as the built-in function's.
type customInput struct {
	StreamName *string         `json:"stream_name"`
	GroupID    *string         `json:"group_id"`
	ItemID     *string         `json:"item_id"`
	Data       json.RawMessage `json:"data"`
	IfSeq      *uint64         `json:"if_seq"`
}

// decode parses the input of op and checks the fields it needs.
func (c *customStream) decode(op string, payload json.RawMessage, item, data bool) (customInput, error) {
	var in customInput
	fn := customStreamFunctionID(op, c.name)
	if !isJSONNull(payload) {
		if err := json.Unmarshal(payload, &in); err != nil {
			return in, errorf(CodeInvalidArgument, "%s: bad input: %v", fn, err)
		}
	}
	switch {
	case in.StreamName != nil && *in.StreamName != c.name:
		return in, errorf(CodeInvalidArgument, "%s: stream_name is %q", fn, *in.StreamName)
	case op != "list_groups" && in.GroupID == nil:
		return in, errorf(CodeInvalidArgument, "%s: missing field group_id", fn)
	case item && in.ItemID == nil:
		return in, errorf(CodeInvalidArgument, "%s: missing field item_id", fn)
	case data && in.Data == nil:
		return in, errorf(CodeInvalidArgument, "%s: missing field data", fn)
	case in.IfSeq != nil:
		return in, errorf(CodeInvalidArgument, "%s: a custom stream cannot check if_seq", fn)
	}
	return in, nil
}

// value checks a value the backend returned; nil and empty mean null.
func (c *customStream) value(op, what string, v json.RawMessage) (json.RawMessage, error) {
	if len(v) == 0 {
		return json.RawMessage("null"), nil
	}
	if !json.Valid(v) {
		return nil, errorf(CodeHandlerError, "%s: the backend returned %s that is not valid JSON", customStreamFunctionID(op, c.name), what)
	}
	return v, nil
}

func (c *customStream) get(ctx context.Context, payload json.RawMessage) (any, error) {
	in, err := c.decode("get", payload, true, false)
	if err != nil {
		return nil, err
	}
	v, err := c.b.Get(ctx, *in.GroupID, *in.ItemID)
	if err != nil {
		return nil, err
	}
	return c.value("get", "a value", v)
}

func (c *customStream) set(ctx context.Context, payload json.RawMessage) (any, error) {
	in, err := c.decode("set", payload, true, true)
	if err != nil {
		return nil, err
	}
	old, err := c.b.Set(ctx, *in.GroupID, *in.ItemID, in.Data)
	if err != nil {
		return nil, err
	}
	if old, err = c.value("set", "an old value", old); err != nil {
		return nil, err
	}
	return struct {
		OldValue json.RawMessage `json:"old_value"`
		NewValue json.RawMessage `json:"new_value"`
	}{old, in.Data}, nil
}

func (c *customStream) delete(ctx context.Context, payload json.RawMessage) (any, error) {
	in, err := c.decode("delete", payload, true, false)
	if err != nil {
		return nil, err
	}
	old, err := c.b.Delete(ctx, *in.GroupID, *in.ItemID)
	if err != nil {
		return nil, err
	}
	if old, err = c.value("delete", "an old value", old); err != nil {
		return nil, err
	}
	return struct {
		OldValue json.RawMessage `json:"old_value"`
	}{old}, nil
}

func (c *customStream) list(ctx context.Context, payload json.RawMessage) (any, error) {
	in, err := c.decode("list", payload, false, false)
	if err != nil {
		return nil, err
	}
	vs, err := c.b.List(ctx, *in.GroupID)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(vs))
	for i, v := range vs {
		if out[i], err = c.value("list", fmt.Sprintf("item %d", i), v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *customStream) listGroups(ctx context.Context, payload json.RawMessage) (any, error) {
	if _, err := c.decode("list_groups", payload, false, false); err != nil {
		return nil, err
	}
	gs, err := c.b.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	if gs == nil {
		gs = []string{}
	}
	return gs, nil
}
