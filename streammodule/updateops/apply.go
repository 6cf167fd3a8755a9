package updateops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Apply applies ops in order to current (the stored JSON value; exists=false
// when the item is missing, current is then ignored). It returns the new
// JSON value, or the first failing op's *OpError (and then no value). An
// undecodable current value is an error of another type. It never modifies
// its inputs.
func Apply(current json.RawMessage, exists bool, ops []Op) (json.RawMessage, error) {
	d := doc{root: map[string]any{}, missing: !exists}
	if exists {
		v, err := decodeValue(current)
		if err != nil {
			return nil, fmt.Errorf("updateops: current value: %w", err)
		}
		d.root = v
	}
	for i := range ops {
		if err := d.apply(&ops[i]); err != nil {
			err.Index = i
			return nil, err
		}
		d.missing = false
	}
	return encode(d.root)
}

// doc is the working copy an update is applied to.
type doc struct {
	root any
	// missing is set while the root is still the {} a missing item starts
	// as; root increment, decrement and append treat it as absent.
	missing bool
}

func (d *doc) apply(op *Op) *OpError {
	if op.kind == kindInvalid {
		return &OpError{Code: "invalid_op", Message: "op was not produced by Decode"}
	}
	if err := checkPath(op); err != nil {
		return err
	}
	switch op.kind {
	case kindSet:
		return d.set(op)
	case kindMerge:
		return d.merge(op)
	case kindIncrement, kindDecrement:
		return d.addNumber(op)
	case kindAppend:
		return d.append(op)
	default:
		return d.remove(op)
	}
}

func fail(op *Op, reason, format string, args ...any) *OpError {
	return &OpError{Code: kindNames[op.kind] + "." + reason, Message: fmt.Sprintf(format, args...)}
}

func checkPath(op *Op) *OpError {
	if len(op.path) > maxPathDepth {
		return fail(op, "path.too_deep", "path depth %d exceeds the maximum of %d", len(op.path), maxPathDepth)
	}
	for _, seg := range op.path {
		switch {
		case seg == "":
			return fail(op, "path.empty_segment", "path contains an empty segment")
		case len(seg) > maxSegmentBytes:
			return fail(op, "path.segment_too_long", "path segment of %d bytes exceeds the maximum of %d", len(seg), maxSegmentBytes)
		case isProtoKey(seg):
			return fail(op, "path.proto_polluted", "path segment %q is not allowed (prototype pollution)", seg)
		}
	}
	return nil
}

func (d *doc) set(op *Op) *OpError {
	if len(op.path) == 0 {
		d.root = clone(op.value)
		return nil
	}
	m, ok := d.root.(map[string]any)
	if !ok {
		return fail(op, "target_not_object", "cannot set at path %s: target is %s, expected object", fieldLabel(op.path), typeName(d.root))
	}
	m[op.path[0]] = clone(op.value)
	return nil
}

func (d *doc) merge(op *Op) *OpError {
	value, ok := op.value.(map[string]any)
	if !ok {
		return fail(op, "value.not_an_object", "merge value must be a JSON object, got %s", typeName(op.value))
	}
	if len(value) > maxValueKeys {
		return fail(op, "value.too_many_keys", "merge value has %d top-level keys, exceeds the maximum of %d", len(value), maxValueKeys)
	}
	for _, k := range protoKeys {
		if _, ok := value[k]; ok {
			return fail(op, "value.proto_polluted", "merge value top-level key %q is not allowed (prototype pollution)", k)
		}
	}
	if depth := jsonDepth(op.value); depth > maxValueDepth {
		return fail(op, "value.too_deep", "merge value nesting depth %d exceeds the maximum of %d", depth, maxValueDepth)
	}
	var target map[string]any
	if len(op.path) == 0 {
		if target, ok = d.root.(map[string]any); !ok {
			return nil // a root merge into a non-object root changes nothing
		}
	} else {
		target = d.walkOrCreate(op.path)
	}
	for k, v := range value {
		target[k] = clone(v)
	}
	return nil
}

// walkOrCreate returns the object at segs, replacing the root and every
// intermediate that is not an object (null, scalar, array) with {}.
func (d *doc) walkOrCreate(segs []string) map[string]any {
	node, ok := d.root.(map[string]any)
	if !ok {
		node = map[string]any{}
		d.root = node
	}
	for _, seg := range segs {
		child, ok := node[seg].(map[string]any)
		if !ok {
			child = map[string]any{}
			node[seg] = child
		}
		node = child
	}
	return node
}

func (d *doc) addNumber(op *Op) *OpError {
	negate := op.kind == kindDecrement
	if len(op.path) == 0 {
		if d.missing {
			d.root = deltaNumber(op.by, negate)
			return nil
		}
		sum, err := addTo(op, d.root, fieldLabel(op.path))
		if err != nil {
			return err
		}
		d.root = sum
		return nil
	}
	m, ok := d.root.(map[string]any)
	if !ok {
		return fail(op, "target_not_object", "cannot %s at path %s: target is %s, expected object", kindNames[op.kind], fieldLabel(op.path), typeName(d.root))
	}
	key := op.path[0]
	existing, ok := m[key]
	if !ok {
		m[key] = deltaNumber(op.by, negate)
		return nil
	}
	sum, err := addTo(op, existing, fieldLabel(op.path))
	if err != nil {
		return err
	}
	m[key] = sum
	return nil
}

// addTo adds op's signed `by` to v, which must be a number.
func addTo(op *Op, v any, label string) (json.Number, *OpError) {
	n, ok := v.(json.Number)
	if !ok {
		return "", fail(op, "not_number", "expected number at path %s, got %s", label, typeName(v))
	}
	sum, ok := addNumber(n, op.by, op.kind == kindDecrement)
	if !ok {
		return "", fail(op, "not_number", "number %s at path %s is outside the float64 range", n, label)
	}
	return sum, nil
}

// deltaNumber returns by, or -by when negate is set, exactly.
func deltaNumber(by int64, negate bool) json.Number {
	if !negate {
		return json.Number(strconv.FormatInt(by, 10))
	}
	if by == math.MinInt64 {
		return json.Number(new(big.Int).Neg(big.NewInt(by)).String())
	}
	return json.Number(strconv.FormatInt(-by, 10))
}

// addNumber returns n + by (n - by when negate is set). An integer literal
// gives the exact integer result; any other literal is a float64 sum. It
// reports false for a float literal outside the float64 range.
func addNumber(n json.Number, by int64, negate bool) (json.Number, bool) {
	s := n.String()
	if isIntLiteral(s) {
		if x, err := strconv.ParseInt(s, 10, 64); err == nil {
			if r, ok := addInt64(x, by, negate); ok {
				return json.Number(strconv.FormatInt(r, 10)), true
			}
		}
		x, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return "", false
		}
		if negate {
			x.Sub(x, big.NewInt(by))
		} else {
			x.Add(x, big.NewInt(by))
		}
		return json.Number(x.String()), true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil { // only an overflow to ±Inf for a valid literal
		return "", false
	}
	if negate {
		f -= float64(by)
	} else {
		f += float64(by)
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return "", false
	}
	return json.Number(formatFloat(f)), true
}

// addInt64 returns x + by (x - by when negate is set) and whether it fits.
func addInt64(x, by int64, negate bool) (int64, bool) {
	if negate {
		r := x - by
		return r, (by >= 0) == (r <= x)
	}
	r := x + by
	return r, (by >= 0) == (r >= x)
}

// formatFloat formats f as a JSON number that still reads as a float.
func formatFloat(f float64) string {
	var s string
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		s = strconv.FormatFloat(f, 'e', -1, 64)
		// Shorten a two-digit negative exponent: 1e-07 to 1e-7.
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
	} else {
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

func (d *doc) append(op *Op) *OpError {
	if len(op.path) == 0 {
		target := d.root
		if d.missing {
			target = nil
		}
		next, err := appendTo(op, target, "root")
		if err != nil {
			return err
		}
		d.root = next
		return nil
	}
	root, ok := d.root.(map[string]any)
	if !ok {
		return fail(op, "target_not_object", "cannot append at path %s: target is %s, expected object", segmentsLabel(op.path), typeName(d.root))
	}
	parent := root
	if len(op.path) > 1 {
		parent = d.walkOrCreate(op.path[:len(op.path)-1])
	}
	leaf := op.path[len(op.path)-1]
	existing, ok := parent[leaf]
	if !ok {
		if len(op.path) > 1 {
			// A missing leaf on a nested path is always an array.
			parent[leaf] = []any{clone(op.value)}
		} else {
			parent[leaf] = initialAppend(op.value)
		}
		return nil
	}
	next, err := appendTo(op, existing, leaf)
	if err != nil {
		return err
	}
	parent[leaf] = next
	return nil
}

// appendTo returns target with op's value appended.
func appendTo(op *Op, target any, label string) (any, *OpError) {
	switch t := target.(type) {
	case []any:
		return append(t, clone(op.value)), nil
	case string:
		s, ok := op.value.(string)
		if !ok {
			return nil, fail(op, "type_mismatch", "expected string append value at path %s, got %s", label, typeName(op.value))
		}
		return t + s, nil
	case nil:
		return initialAppend(op.value), nil
	default:
		return nil, fail(op, "type_mismatch", "cannot append at path %s: target is %s, expected array, string, null or missing field", label, typeName(target))
	}
}

// initialAppend is what appending v to null or a missing field gives: a
// string stays a string, anything else becomes [v].
func initialAppend(v any) any {
	if s, ok := v.(string); ok {
		return s
	}
	return []any{clone(v)}
}

func (d *doc) remove(op *Op) *OpError {
	if len(op.path) == 0 {
		d.root = nil
		return nil
	}
	m, ok := d.root.(map[string]any)
	if !ok {
		return fail(op, "target_not_object", "cannot remove at path %s: target is %s, expected object", fieldLabel(op.path), typeName(d.root))
	}
	delete(m, op.path[0])
	return nil
}

// clone deep-copies a decoded JSON value, so that the working copy never
// shares maps or slices with an op.
func clone(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = clone(x)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = clone(x)
		}
		return s
	default:
		return v
	}
}

// jsonDepth counts nested objects and arrays: a scalar is 0, {} and [] are 1.
func jsonDepth(v any) int {
	deepest := 0
	switch t := v.(type) {
	case map[string]any:
		for _, x := range t {
			deepest = max(deepest, jsonDepth(x))
		}
	case []any:
		for _, x := range t {
			deepest = max(deepest, jsonDepth(x))
		}
	default:
		return 0
	}
	return deepest + 1
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// fieldLabel quotes a single-key path for messages.
func fieldLabel(path []string) string {
	if len(path) == 0 {
		return "root"
	}
	return strconv.Quote(path[0])
}

// segmentsLabel shows a segment path for messages.
func segmentsLabel(path []string) string {
	if len(path) == 0 {
		return "root"
	}
	quoted := make([]string, len(path))
	for i, seg := range path {
		quoted[i] = strconv.Quote(seg)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// encode writes v as compact JSON without HTML escaping.
func encode(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("updateops: encode result: %w", err)
	}
	return json.RawMessage(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}
