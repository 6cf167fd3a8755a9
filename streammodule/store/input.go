package store

import (
	"encoding/json"
	"strconv"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/updateops"
)

// The inputs and results the stream and state modules share: both keep
// their values in a store.

// ReadName reads the required name field of in and checks it
// (CheckName, at most maxBytes).
func ReadName(in engine.Input, field string, maxBytes int) (string, error) {
	s, ok, err := in.String(field)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", in.Missing(field)
	}
	if err := CheckName(field, s, maxBytes); err != nil {
		return "", in.Invalid(err)
	}
	return s, nil
}

// ReadPage reads limit and after, the paging fields of the lists (see
// PageArgs); paged tells whether either is set.
func ReadPage(fn string, in engine.Input) (limit int, after string, paged bool, err error) {
	l, err := in.Int("limit")
	if err != nil {
		return 0, "", false, err
	}
	a, ok, err := in.String("after")
	if err != nil {
		return 0, "", false, err
	}
	var ap *string
	if ok {
		ap = &a
	}
	limit, after, err = PageArgs(fn, l, ap)
	return limit, after, l != nil || ok, err
}

// ReadOps reads the required ops field of fn's input (stream::update,
// state::update) and decodes the update operations.
func ReadOps(fn string, in engine.Input) ([]updateops.Op, error) {
	raw := in.Raw("ops")
	if raw == nil {
		return nil, in.Missing("ops")
	}
	ops, err := updateops.Decode(raw)
	if err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "%s: %v", fn, err)
	}
	return ops, nil
}

// MarshalValues is the result of a list that neither pages nor includes
// ids: the items' values, in order.
func MarshalValues(items []Item) ([]byte, error) {
	vals := make([]json.RawMessage, len(items))
	for i, it := range items {
		vals[i] = it.Value
	}
	return engine.MarshalJSON(vals)
}

// AppendChange appends the result of a write (stream::set, update and
// delete; state::set and update):
// {"old_value": old or null, "new_value": value (when set), "seq": seq
// (when not 0)}. Stored values are compact JSON already.
func AppendChange(b []byte, old, value json.RawMessage, seq uint64) []byte {
	if old == nil {
		old = json.RawMessage("null")
	}
	b = append(append(b, `{"old_value":`...), old...)
	if len(value) > 0 {
		b = append(append(b, `,"new_value":`...), value...)
	}
	if seq != 0 {
		b = strconv.AppendUint(append(b, `,"seq":`...), seq, 10)
	}
	return append(b, '}')
}
