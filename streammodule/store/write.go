package store

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/updateops"
)

// The write path shared with the state module, which keeps its values in
// the same

// CallError gives a store failure of function fn its engine code; kind
// names the store ("stream", "state") and thing what it holds ("item",
// "value") in the messages.
func CallError(fn, kind, thing string, err error) error {
	var e *engine.Error
	var oe *updateops.OpError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &oe):
		return engine.Errorf(codes.InvalidArgument, "%s: %v; nothing was written", fn, oe)
	case errors.Is(err, ErrConflict):
		return engine.Errorf(codes.Conflict, "%s: if_seq does not match the %s's sequence", fn, thing)
	case errors.Is(err, ErrClosed):
		return engine.Errorf(codes.Unavailable, "%s: the %s store is closed", fn, kind)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return engine.Errorf(codes.Internal, "%s: %v", fn, err)
}

// PutValue stores v at k if c holds.
func PutValue(ctx context.Context, s Store, k Key, c Cond, v json.RawMessage) (Change, error) {
	return s.Put(ctx, k, c, func(json.RawMessage, bool) (json.RawMessage, error) { return v, nil })
}

// PutOps applies ops to the value at k, all or nothing, if c holds; check
// vets the new value (its size) before it is written.
func PutOps(ctx context.Context, s Store, k Key, c Cond, ops []updateops.Op, check func(json.RawMessage) error) (Change, error) {
	return s.Put(ctx, k, c, func(old json.RawMessage, exists bool) (json.RawMessage, error) {
		v, err := updateops.Apply(old, exists, ops)
		if err != nil {
			return nil, err
		}
		return v, check(v)
	})
}
