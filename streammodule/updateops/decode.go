package updateops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Decode parses the JSON array of ops. A malformed op (unknown type, missing
// required field, wrong field type, float `by`) is an error naming its
// index: "ops[2]: ...". An empty array is valid. More than MaxOps ops is an
// error.
func Decode(raw json.RawMessage) ([]Op, error) {
	if !startsWith(raw, '[') {
		return nil, errors.New("ops: must be a JSON array")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("ops: %w", err)
	}
	if len(elems) > MaxOps {
		return nil, fmt.Errorf("ops: %d ops exceed the maximum of %d", len(elems), MaxOps)
	}
	ops := make([]Op, len(elems))
	for i, elem := range elems {
		op, err := decodeOp(elem)
		if err != nil {
			return nil, fmt.Errorf("ops[%d]: %w", i, err)
		}
		ops[i] = op
	}
	return ops, nil
}

func decodeOp(raw json.RawMessage) (Op, error) {
	if !startsWith(raw, '{') {
		return Op{}, errors.New("op must be a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return Op{}, err
	}
	typ, err := requiredString(fields, "type")
	if err != nil {
		return Op{}, err
	}
	op := Op{Type: typ}
	switch typ {
	case "set":
		op.kind = kindSet
		if op.path, err = fieldPath(fields); err != nil {
			return Op{}, err
		}
		if v, ok := fields["value"]; ok {
			if op.value, err = decodeValue(v); err != nil {
				return Op{}, fmt.Errorf("field value: %w", err)
			}
		}
	case "merge", "append":
		op.kind = kindMerge
		if typ == "append" {
			op.kind = kindAppend
		}
		if op.path, err = segmentsPath(fields); err != nil {
			return Op{}, err
		}
		v, ok := fields["value"]
		if !ok {
			return Op{}, errors.New(`missing field "value"`)
		}
		if op.value, err = decodeValue(v); err != nil {
			return Op{}, fmt.Errorf("field value: %w", err)
		}
	case "increment", "decrement":
		op.kind = kindIncrement
		if typ == "decrement" {
			op.kind = kindDecrement
		}
		if op.path, err = fieldPath(fields); err != nil {
			return Op{}, err
		}
		if op.by, err = decodeBy(fields); err != nil {
			return Op{}, err
		}
	case "remove":
		op.kind = kindRemove
		if op.path, err = fieldPath(fields); err != nil {
			return Op{}, err
		}
	default:
		return Op{}, fmt.Errorf("unknown op type %q", typ)
	}
	return op, nil
}

// requiredString decodes a field that must be present and a JSON string.
func requiredString(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", fmt.Errorf("missing field %q", name)
	}
	v, err := decodeValue(raw)
	if err != nil {
		return "", fmt.Errorf("field %s: %w", name, err)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("field %s: expected a string, got %s", name, typeName(v))
	}
	return s, nil
}

// fieldPath decodes the string path of set, increment, decrement and
// remove: "" is the root, anything else one literal key.
func fieldPath(fields map[string]json.RawMessage) ([]string, error) {
	s, err := requiredString(fields, "path")
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, nil
	}
	return []string{s}, nil
}

// segmentsPath decodes the optional path of merge and append: absent, null,
// "" and [] are the root, a string is one literal segment, and an array of
// strings is a list of literal segments.
func segmentsPath(fields map[string]json.RawMessage) ([]string, error) {
	raw, ok := fields["path"]
	if !ok {
		return nil, nil
	}
	v, err := decodeValue(raw)
	if err != nil {
		return nil, fmt.Errorf("field path: %w", err)
	}
	switch p := v.(type) {
	case nil:
		return nil, nil
	case string:
		if p == "" {
			return nil, nil
		}
		return []string{p}, nil
	case []any:
		segs := make([]string, len(p))
		for i, seg := range p {
			s, ok := seg.(string)
			if !ok {
				return nil, fmt.Errorf("field path: segment %d: expected a string, got %s", i, typeName(seg))
			}
			segs[i] = s
		}
		return segs, nil
	default:
		return nil, fmt.Errorf("field path: expected a string or an array of strings, got %s", typeName(v))
	}
}

// decodeBy decodes the required integer `by` of increment and decrement.
func decodeBy(fields map[string]json.RawMessage) (int64, error) {
	raw, ok := fields["by"]
	if !ok {
		return 0, errors.New(`missing field "by"`)
	}
	v, err := decodeValue(raw)
	if err != nil {
		return 0, fmt.Errorf("field by: %w", err)
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("field by: expected an integer, got %s", typeName(v))
	}
	s := n.String()
	if !isIntLiteral(s) {
		return 0, fmt.Errorf("field by: expected an integer, got %s", s)
	}
	by, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("field by: %s is outside the i64 range", s)
	}
	return by, nil
}

// decodeValue decodes one JSON value, keeping numbers as json.Number.
func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// isIntLiteral reports whether a JSON number literal has no fraction and no
// exponent.
func isIntLiteral(s string) bool {
	return !strings.ContainsAny(s, ".eE")
}

func startsWith(raw []byte, c byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == c
}
