package engine

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/trinehq/trine/codes"
)

// Input is a call's payload read as a JSON object: its members' values as
// raw bytes of the payload, found in one pass. The engine has checked the
// payload when the call came in (valid JSON, valid UTF-8, no lone
// surrogate escapes), so Input neither validates nor decodes anything
// twice: each typed accessor reads one member when a function asks for
// it. Members are found as encoding/json finds struct fields: names fold
// case (bytes.EqualFold), and the last member of a name wins; null is an
// absent member, except for Raw.
//
// An absent, empty or null payload is an empty object.
type Input struct {
	fn      string
	members []member
	compact bool // the payload has no space between tokens (Call.compact)
}

type member struct {
	name  []byte // unquoted
	value []byte // raw, as in the payload
}

// ReadInput reads c's payload. Anything but an object is refused with
// invalid_argument.
func ReadInput(c Call) (Input, error) {
	in := Input{fn: c.FunctionID, compact: c.compact}
	b := c.Payload
	i := skipSpace(b, 0)
	if i == len(b) || bytes.Equal(bytes.TrimSpace(b[i:]), []byte("null")) {
		return in, nil
	}
	if b[i] != '{' {
		return in, in.bad("want a JSON object")
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return in, nil
	}
	in.members = make([]member, 0, 8) // the functions' inputs have a few members
	for i < len(b) {
		end := SkipJSONValue(b, i)
		if end < 0 || b[i] != '"' {
			return in, in.bad("not a JSON object")
		}
		name := b[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			var s string
			if err := json.Unmarshal(b[i:end], &s); err != nil {
				return in, in.bad("not a JSON object")
			}
			name = []byte(s)
		}
		i = skipSpace(b, end)
		if i == len(b) || b[i] != ':' {
			return in, in.bad("not a JSON object")
		}
		i = skipSpace(b, i+1)
		end = SkipJSONValue(b, i)
		if end < 0 {
			return in, in.bad("not a JSON object")
		}
		in.members = append(in.members, member{name, b[i:end]})
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return in, nil
		}
		break
	}
	return in, in.bad("not a JSON object")
}

func (in Input) bad(why string) error {
	return Errorf(codes.InvalidArgument, "%s: bad input: %s", in.fn, why)
}

// Invalid is an invalid_argument error of the function, "<fn>: <err>".
func (in Input) Invalid(err error) error {
	return Errorf(codes.InvalidArgument, "%s: %v", in.fn, err)
}

// Missing is the error for a required member that is absent.
func (in Input) Missing(name string) error {
	return Errorf(codes.InvalidArgument, "%s: missing field %s", in.fn, name)
}

// lookup returns the last member called name, null or not.
func (in Input) lookup(name string) ([]byte, bool) {
	for i := len(in.members) - 1; i >= 0; i-- {
		if bytes.EqualFold(in.members[i].name, []byte(name)) {
			return in.members[i].value, true
		}
	}
	return nil, false
}

// value returns the last member called name; ok is false when it is
// absent or null.
func (in Input) value(name string) ([]byte, bool) {
	v, ok := in.lookup(name)
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

func isNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

// String reads a string member; ok is false when it is absent or null.
func (in Input) String(name string) (s string, ok bool, err error) {
	v, ok := in.value(name)
	if !ok {
		return "", false, nil
	}
	if v[0] != '"' {
		return "", false, in.bad(name + " must be a string")
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, in.bad(name + " must be a string")
	}
	return s, true, nil
}

// Uint64 reads an unsigned integer member; nil when absent or null.
func (in Input) Uint64(name string) (*uint64, error) {
	v, ok := in.value(name)
	if !ok {
		return nil, nil
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return nil, in.bad(name + " must be an unsigned integer")
	}
	return &n, nil
}

// Int reads an integer member; nil when absent or null.
func (in Input) Int(name string) (*int, error) {
	v, ok := in.value(name)
	if !ok {
		return nil, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return nil, in.bad(name + " must be an integer")
	}
	return &n, nil
}

// Bool reads a boolean member; false when absent. As in encoding/json, a
// null member leaves the value an earlier member of the name gave.
func (in Input) Bool(name string) (bool, error) {
	b := false
	for _, m := range in.members {
		if !bytes.EqualFold(m.name, []byte(name)) || isNull(m.value) {
			continue
		}
		switch string(m.value) {
		case "true":
			b = true
		case "false":
			b = false
		default:
			return false, in.bad(name + " must be a boolean")
		}
	}
	return b, nil
}

// Raw returns a member's value as it is in the payload; nil when absent.
// A null member is "null", as encoding/json gives a json.RawMessage.
func (in Input) Raw(name string) json.RawMessage {
	v, ok := in.lookup(name)
	if !ok {
		return nil
	}
	return v
}

// Compact returns a member's value compact (no space between tokens), in
// a slice of its own; nil when absent. A null member is "null".
func (in Input) Compact(name string) json.RawMessage {
	v, ok := in.lookup(name)
	if !ok {
		return nil
	}
	if in.compact {
		return bytes.Clone(v)
	}
	return AppendCompact(make([]byte, 0, len(v)), v)
}

// AppendCompact appends b, valid JSON, to dst without the space between
// its tokens, as json.Compact does (without HTML escaping).
func AppendCompact(dst, b []byte) []byte {
	inString := false
	start := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			dst = append(dst, b[start:i]...)
			start = i + 1
		}
	}
	return append(dst, b[start:]...)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// SkipJSONValue returns the end of the JSON value at b[i], or -1 when there
// is none. It only follows strings and nesting, so the value is JSON text
// only if b is: check it (ValidJSONText) where b was not.
func SkipJSONValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := SkipJSONValue(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && !bytes.ContainsRune([]byte(",}] \t\n\r:"), rune(b[j])) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
