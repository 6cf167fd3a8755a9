package trine

import (
	"encoding/json"
	"slices"
)

// UpdateOp is one operation of Stream.Update, built by OpSet, OpMerge,
// OpIncrement, OpDecrement, OpAppend or OpRemove. The zero UpdateOp is not
// valid: sending it fails with code invalid_argument.
type UpdateOp struct {
	typ      string
	field    string   // set, increment, decrement, remove: one key, "" = root
	segments []string // merge, append: nested keys, empty = root
	value    any
	by       int64
}

// OpSet sets the top-level key path to value; path "" replaces the whole
// value.
func OpSet(path string, value any) UpdateOp {
	return UpdateOp{typ: "set", field: path, value: value}
}

// OpMerge copies value's keys into the object at path (nested keys, created
// as needed); a nil or empty path merges into the root. A nil map merges
// nothing.
func OpMerge(path []string, value map[string]any) UpdateOp {
	var v any = value
	if value == nil {
		v = map[string]any{}
	}
	return UpdateOp{typ: "merge", segments: slices.Clone(path), value: v}
}

// OpIncrement adds by to the number at the top-level key path (a missing
// key counts as 0); path "" is the root.
func OpIncrement(path string, by int64) UpdateOp {
	return UpdateOp{typ: "increment", field: path, by: by}
}

// OpDecrement subtracts by from the number at the top-level key path (a
// missing key counts as 0); path "" is the root.
func OpDecrement(path string, by int64) UpdateOp {
	return UpdateOp{typ: "decrement", field: path, by: by}
}

// OpAppend appends value to the array at path (nested keys); a nil or
// empty path is the root. A string value is concatenated to a string there.
// Appending to null or a missing field gives the value itself for a string
// and a one-element array otherwise; a missing nested leaf always becomes
// an array.
func OpAppend(path []string, value any) UpdateOp {
	return UpdateOp{typ: "append", segments: slices.Clone(path), value: value}
}

// OpRemove removes the top-level key path.
func OpRemove(path string) UpdateOp {
	return UpdateOp{typ: "remove", field: path}
}

// MarshalJSON encodes the op as stream::update expects it, for example
// {"type":"increment","path":"n","by":1}.
func (o UpdateOp) MarshalJSON() ([]byte, error) {
	type fieldValue struct {
		Type  string `json:"type"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	type segmentsValue struct {
		Type  string   `json:"type"`
		Path  []string `json:"path,omitempty"`
		Value any      `json:"value"`
	}
	type fieldBy struct {
		Type string `json:"type"`
		Path string `json:"path"`
		By   int64  `json:"by"`
	}
	type fieldOnly struct {
		Type string `json:"type"`
		Path string `json:"path"`
	}
	switch o.typ {
	case "set":
		return json.Marshal(fieldValue{o.typ, o.field, o.value})
	case "merge", "append":
		return json.Marshal(segmentsValue{o.typ, o.segments, o.value})
	case "increment", "decrement":
		return json.Marshal(fieldBy{o.typ, o.field, o.by})
	case "remove":
		return json.Marshal(fieldOnly{o.typ, o.field})
	}
	return nil, errorf(CodeInvalidArgument, "update op has no type; build it with OpSet, OpMerge, OpIncrement, OpDecrement, OpAppend or OpRemove")
}
