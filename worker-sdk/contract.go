package trine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// The engine's contract function ids.
const (
	fnStreamDefine = "stream::define"
	fnStreamSchema = "engine::streams::schema"
)

// DefineOption configures DefineStream.
type DefineOption interface{ applyDefine(*defineOptions) }

type defineOptions struct {
	version uint64
	mode    string
	events  map[string]json.RawMessage
	migrate string
	groupID string
	err     error
}

type defineOption func(*defineOptions)

func (f defineOption) applyDefine(o *defineOptions) { f(o) }

// WithContractVersion sets the contract's version: 1 or more, above the stream's
// last. Default 1.
func WithContractVersion(v uint64) DefineOption {
	return defineOption(func(o *defineOptions) { o.version = v })
}

// WithCompatibility sets the compatibility mode a new version is checked
// under: BACKWARD (the default), BACKWARD_TRANSITIVE, FORWARD,
// FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE.
func WithCompatibility(mode string) DefineOption {
	return defineOption(func(o *defineOptions) { o.mode = mode })
}

// WithMigrate names the function that converts the stream's stored
// items that a new version refuses: the engine calls it with
// {stream_name, group_id, item_id, data, version} for each, under the
// worker's own rights, and stores what it returns (which the new version
// must accept) before the version takes effect. Without it, a new version
// that stored items (or events still in a group's history) break is
// refused, naming the first of them.
func WithMigrate(functionID string) DefineOption {
	return defineOption(func(o *defineOptions) { o.migrate = functionID })
}

// WithGroupIDPattern sets the pattern every group id of the stream must
// match (at most 256 bytes; * matches any characters, as in "room-*"):
// the engine refuses Set, Update and Send to a group off it with
// CodeInvalidArgument, and `trine codegen ts` types the stream's group
// ids with it. Each version states its own pattern: a new version without
// this option drops it.
func WithGroupIDPattern(pattern string) DefineOption {
	return defineOption(func(o *defineOptions) { o.groupID = pattern })
}

// WithEvent declares an event type of the stream, whose data is an E
// (its schema is SchemaFor[E]). Once a stream declares any event type,
// Send of an undeclared one is refused.
func WithEvent[E any](eventType string) DefineOption {
	return defineOption(func(o *defineOptions) {
		s, err := SchemaFor[E]()
		if err != nil {
			o.err = errors.Join(o.err, fmt.Errorf("event %q: %w", eventType, err))
			return
		}
		if o.events == nil {
			o.events = map[string]json.RawMessage{}
		}
		o.events[eventType] = s
	})
}

// DefineStream makes T the contract of the stream name: it derives T's
// schema with SchemaFor, defines it with stream::define, and returns the
// typed Stream of T, so that the type a worker writes and the contract
// the engine enforces are one. From then on the engine refuses, from every
// worker and transport, an item that is not a T (invalid_argument naming
// the JSON pointer and the rule).
//
// Defining the version already in force with the same schemas succeeds,
// so a worker may call DefineStream each time it starts; a different
// definition under that version, a lower version or a change the
// compatibility mode forbids fails with CodeConflict.
func DefineStream[T any](ctx context.Context, w *Worker, name string, opts ...DefineOption) (*Stream[T], error) {
	s := NewStream[T](w, name)
	if err := s.ready("define"); err != nil {
		return nil, err
	}
	o, err := applyOptions(defineOptions{version: 1}, opts, DefineOption.applyDefine)
	if err != nil {
		return nil, err
	}
	if o.err != nil {
		return nil, errorf(CodeInvalidArgument, "stream %q: define: %v", name, o.err)
	}
	item, err := SchemaFor[T]()
	if err != nil {
		return nil, errorf(CodeInvalidArgument, "stream %q: define: %v", name, err)
	}
	in := streamDefinition{StreamName: name, Version: o.version, Mode: o.mode, Item: item, Events: o.events, GroupID: o.groupID, Migrate: o.migrate}
	var r json.RawMessage
	err = s.call(ctx, "define", fnStreamDefine, in, &r)
	if errors.Is(err, ErrConflict) {
		if same, serr := s.inForce(ctx, in); serr == nil && same {
			return s, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// streamDefinition is stream::define's input, and a definition in
// engine::streams::schema's answer.
type streamDefinition struct {
	StreamName string                     `json:"stream_name"`
	Version    uint64                     `json:"version"`
	Mode       string                     `json:"compatibility,omitempty"`
	Item       json.RawMessage            `json:"item_schema"`
	Events     map[string]json.RawMessage `json:"event_schemas,omitempty"`
	GroupID    string                     `json:"group_id_pattern,omitempty"`
	Migrate    string                     `json:"migrate,omitempty"`
}

// inForce reports whether d is the stream's contract in force already.
func (s *Stream[T]) inForce(ctx context.Context, d streamDefinition) (bool, error) {
	var r struct {
		Current *streamDefinition `json:"current"`
	}
	if err := s.call(ctx, "schema", fnStreamSchema, keyInput{StreamName: s.name}, &r); err != nil {
		return false, err
	}
	c := r.Current
	if c == nil || c.Version != d.Version || (d.Mode != "" && c.Mode != d.Mode) || c.GroupID != d.GroupID || !sameJSON(c.Item, d.Item) || len(c.Events) != len(d.Events) {
		return false, nil
	}
	for k, v := range d.Events {
		if !sameJSON(c.Events[k], v) {
			return false, nil
		}
	}
	return true, nil
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
