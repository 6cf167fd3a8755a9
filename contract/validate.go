package contract

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// maxRuleBytes bounds one violation's rule, which may quote the schema.
const maxRuleBytes = 200

var printer = message.NewPrinter(language.English)

// Validate checks value, JSON, against the schema. Numbers keep their
// precision. A value that is not JSON, or that the schema refuses, is an
// *Error with code invalid_argument wrapping ErrInvalidValue, whose
// Problems are the first violations as "pointer: rule", for example
// "/title: expected string, got number".
func (s *Schema) Validate(value []byte) error {
	if s.fastValid(value) {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return newError(CodeInvalidArgument, ErrInvalidValue, "", []string{"value is not JSON: " + truncate(err.Error(), maxRuleBytes)}, s.limits.MaxMessageBytes)
	}
	return s.ValidateDecoded(v)
}

// ValidateDecoded is Validate for a value already decoded by
// jsonschema.UnmarshalJSON (numbers as json.Number). Values decoded by
// encoding/json into float64 are accepted but have lost precision.
func (s *Schema) ValidateDecoded(v any) error {
	nodes, depth := measure(v, 0, s.limits.MaxValueDepth)
	if depth > s.limits.MaxValueDepth {
		msg := fmt.Sprintf("%s: nested %d deep, over the limit of %d", root, depth, s.limits.MaxValueDepth)
		return newError(CodeInvalidArgument, ErrInvalidValue, "", []string{msg}, s.limits.MaxMessageBytes)
	}
	if nodes*s.evaluations > s.limits.MaxValidationWork {
		msg := fmt.Sprintf("%s: %d JSON nodes, over the %d this schema allows (%d subschema evaluations and enum comparisons at one place)", root, nodes, s.limits.MaxValidationWork/s.evaluations, s.evaluations)
		return newError(CodeInvalidArgument, ErrInvalidValue, "", []string{msg}, s.limits.MaxMessageBytes)
	}
	if at, bad := badNumber(v, nil); bad {
		return newError(CodeInvalidArgument, ErrInvalidValue, "", []string{pointer(at) + ": " + numberRule}, s.limits.MaxMessageBytes)
	}
	if s.patternWork > 0 {
		if n := stringBytes(v); n*s.patternWork > s.limits.MaxPatternWork {
			msg := fmt.Sprintf("%s: %d bytes of strings, over the %d this schema's patterns allow (%d pattern instructions)", root, n, s.limits.MaxPatternWork/s.patternWork, s.patternWork)
			return newError(CodeInvalidArgument, ErrInvalidValue, "", []string{msg}, s.limits.MaxMessageBytes)
		}
	}
	err := s.sch.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return newError(CodeInvalidArgument, ErrInvalidValue, "", []string{truncate(err.Error(), maxRuleBytes)}, s.limits.MaxMessageBytes)
	}
	return newError(CodeInvalidArgument, ErrInvalidValue, "", violations(ve, s.limits.MaxProblems, false), s.limits.MaxMessageBytes)
}

// violations lists the leaves of a validation error as "pointer: rule",
// sorted by pointer, at most max of them; schema says the error is a
// schema's, checked against the draft's meta-schema.
func violations(ve *jsonschema.ValidationError, max int, schema bool) []string {
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		out = append(out, describe(e, schema)...)
	}
	walk(ve)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// describe says what failed at one leaf. Missing and unexpected properties
// are reported at the property's own pointer.
func describe(e *jsonschema.ValidationError, schema bool) []string {
	at := pointer(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		return []string{at + ": expected " + strings.Join(k.Want, " or ") + ", got " + k.Got}
	case *kind.Required:
		var out []string
		for _, m := range k.Missing {
			out = append(out, pointer(append(slices.Clip(e.InstanceLocation), m))+": required")
		}
		return out
	case *kind.AdditionalProperties:
		var out []string
		for _, p := range k.Properties {
			out = append(out, pointer(append(slices.Clip(e.InstanceLocation), p))+": not allowed (additionalProperties)")
		}
		return out
	case *kind.FalseSchema:
		return []string{at + ": not allowed (false schema)"}
	case *kind.Format:
		// A value's refusal gives neither the value nor the parser's
		// error, which quotes it (time, URL and address parsers do): the
		// value is at the pointer, may be long, and the message may reach
		// whoever may not read it (a definer re-checking stored items,
		// the engine's log). A schema's refusal keeps the error: the
		// schema is its sender's own.
		if !schema {
			return []string{at + ": format: not a valid " + truncate(k.Want, maxRuleBytes)}
		}
		return []string{at + ": " + truncate("format: not a valid "+k.Want+": "+fmt.Sprint(k.Err), maxRuleBytes)}
	case *kind.Enum:
		// A long enum is not spelled out: formatting it for every
		// failing place would cost more than the validation.
		if len(k.Want) > maxEnumShown {
			return []string{fmt.Sprintf("%s: enum: not one of the %d values allowed", at, len(k.Want))}
		}
	case *kind.Pattern:
		return []string{at + ": " + truncate(fmt.Sprintf("pattern: does not match %q", k.Want), maxRuleBytes)}
	}
	rule := e.ErrorKind.LocalizedString(printer)
	if kw := e.ErrorKind.KeywordPath(); len(kw) > 0 && !strings.HasPrefix(rule, kw[len(kw)-1]) {
		rule = kw[len(kw)-1] + ": " + rule
	}
	return []string{at + ": " + truncate(rule, maxRuleBytes)}
}

// maxEnumShown is the most allowed values a refusal by enum lists.
const maxEnumShown = 10

// root names the value itself in messages, where its JSON pointer would
// be the empty string.
const root = "(root)"

// pointer is the JSON pointer of tokens, or root.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return root
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

// members iterates over the members of a JSON object (name and value) or
// the items of an array (an empty name and the item); ok is false for
// anything else.
func members(v any) (seq iter.Seq2[string, any], ok bool) {
	switch v := v.(type) {
	case map[string]any:
		return maps.All(v), true
	case []any:
		return func(yield func(string, any) bool) {
			for _, x := range v {
				if !yield("", x) {
					return
				}
			}
		}, true
	}
	return nil, false
}

// stringBytes is the bytes of the strings and property names in v.
func stringBytes(v any) int64 {
	if s, ok := v.(string); ok {
		return int64(len(s))
	}
	var n int64
	if m, ok := members(v); ok {
		for k, x := range m {
			n += int64(len(k)) + stringBytes(x)
		}
	}
	return n
}

// measure counts the JSON nodes of v (values, items and properties) and
// its nesting of objects and arrays, from depth d; past limit it stops
// descending other branches and reports the depth of the first deep one
// in full, so that the message names it.
func measure(v any, d, limit int) (nodes int64, depth int) {
	nodes, depth = 1, d
	m, ok := members(v)
	if !ok {
		return nodes, depth
	}
	depth = d + 1
	for _, x := range m {
		n, dx := measure(x, d+1, limit)
		nodes, depth = nodes+n, max(depth, dx)
		if depth > limit {
			break
		}
	}
	return nodes, depth
}
