// Package updateops decodes and applies the JSON update operations of
// stream::update: set, merge, increment, decrement, append and remove.
//
// The semantics follow the iii engine, with one difference: application is
// all-or-nothing. The first failing op aborts the update and no value is
// produced, where the engine would skip the op and keep the others.
//
// Values are decoded with json.Decoder.UseNumber, so numbers that no op
// touches keep their exact literal, and integer arithmetic is exact.
//
// Concurrency: every function is pure and safe to call concurrently; the
// package starts no goroutines.
package updateops

import "fmt"

// MaxOps is the most ops one update may carry.
const MaxOps = 1024

// Bounds checked on paths and merge values.
const (
	maxPathDepth    = 32
	maxSegmentBytes = 256
	maxValueDepth   = 16
	maxValueKeys    = 1024
)

// protoKeys are rejected as path segments and as top-level merge keys.
var protoKeys = [...]string{"__proto__", "constructor", "prototype"}

func isProtoKey(s string) bool {
	for _, k := range protoKeys {
		if s == k {
			return true
		}
	}
	return false
}

type kind uint8

const (
	kindInvalid kind = iota
	kindSet
	kindMerge
	kindIncrement
	kindDecrement
	kindAppend
	kindRemove
)

var kindNames = [...]string{
	kindInvalid:   "invalid",
	kindSet:       "set",
	kindMerge:     "merge",
	kindIncrement: "increment",
	kindDecrement: "decrement",
	kindAppend:    "append",
	kindRemove:    "remove",
}

// Op is one decoded operation. Ops are built by Decode.
type Op struct {
	// Type is the op's wire type: "set", "merge", "increment",
	// "decrement", "append" or "remove".
	Type string

	kind kind
	// path holds literal segments; empty means the root. Set, increment,
	// decrement and remove have at most one.
	path []string
	// value is the set, merge or append value; nil is JSON null.
	value any
	by    int64
}

// OpError is the failure of one op.
type OpError struct {
	Index   int    `json:"op_index"`
	Code    string `json:"code"` // e.g. "increment.not_number"
	Message string `json:"message"`
}

// Error returns "ops[<index>] <code>: <message>".
func (e *OpError) Error() string {
	return fmt.Sprintf("ops[%d] %s: %s", e.Index, e.Code, e.Message)
}
