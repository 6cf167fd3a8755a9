// Package tsgen writes TypeScript types for JSON Schemas (draft 2020-12),
// for `trine codegen ts`: streams' items and events, as a map type that
// @trine/client's typed client reads.
//
// It covers what contracts use: type (and lists of types), properties and
// required, additionalProperties, items, enum, const, anyOf, oneOf, allOf
// and local $ref to $defs (named types, so recursive schemas work).
// Anything else becomes unknown, which is never wrong, only loose.
//
// Concurrency: its functions keep no state between calls and may be
// called concurrently; the package starts no goroutines.
package tsgen

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Stream is one stream to type.
type Stream struct {
	Name    string
	Version uint64
	Item    json.RawMessage
	Events  map[string]json.RawMessage
	// GroupID is a group id pattern ("room-*": * matches any characters),
	// or "" for any string.
	GroupID string
}

// Function is one function to type: its request and response formats,
// either of which may be nil (unknown).
type Function struct {
	ID                string
	Request, Response json.RawMessage
}

// Write returns the TypeScript module for streams, in name order: one
// type per item and event schema (and per $defs entry), and
//
//	export type Streams = {"name": {item: …; events: {…}; group: …}}
//
// and, for fns, one type per format and
//
//	export type Functions = {"id": {request: …; response: …}}
func Write(header string, streams []Stream, fns []Function) (string, error) {
	var b strings.Builder
	b.WriteString(header)
	streams = slices.Clone(streams)
	slices.SortFunc(streams, func(a, b Stream) int { return strings.Compare(a.Name, b.Name) })
	var entries []string
	for _, s := range streams {
		base := Pascal(s.Name)
		item := base + "Item"
		if err := writeNamed(&b, item, s.Item, fmt.Sprintf("stream %s, contract version %d: an item", s.Name, s.Version)); err != nil {
			return "", fmt.Errorf("stream %s: item_schema: %w", s.Name, err)
		}
		var evs []string
		for _, typ := range slices.Sorted(func(yield func(string) bool) {
			for k := range s.Events {
				if !yield(k) {
					return
				}
			}
		}) {
			name := base + "Event" + Pascal(typ)
			if err := writeNamed(&b, name, s.Events[typ], fmt.Sprintf("stream %s: the data of event %q", s.Name, typ)); err != nil {
				return "", fmt.Errorf("stream %s: event %s: %w", s.Name, typ, err)
			}
			evs = append(evs, fmt.Sprintf("%s: %s", quote(typ), name))
		}
		events := "Record<string, unknown>"
		if len(s.Events) > 0 {
			events = "{ " + strings.Join(evs, "; ") + " }"
		}
		entries = append(entries, fmt.Sprintf("  %s: { item: %s; events: %s; group: %s }", quote(s.Name), item, events, GroupType(s.GroupID)))
	}
	b.WriteString("/** Every stream's types, for connect<Streams>(url) of @trine/client. */\nexport type Streams = {\n")
	for _, e := range entries {
		b.WriteString(e + "\n")
	}
	b.WriteString("}\n")
	if len(fns) == 0 {
		return b.String(), nil
	}
	fns = slices.Clone(fns)
	slices.SortFunc(fns, func(a, b Function) int { return strings.Compare(a.ID, b.ID) })
	entries = entries[:0]
	for _, f := range fns {
		types := [2]string{"unknown", "unknown"}
		for i, part := range []struct {
			name   string
			schema json.RawMessage
		}{{"Request", f.Request}, {"Response", f.Response}} {
			if len(part.schema) == 0 || string(part.schema) == "null" {
				continue
			}
			types[i] = Pascal(f.ID) + part.name
			if err := writeNamed(&b, types[i], part.schema, fmt.Sprintf("function %s: its %s", f.ID, strings.ToLower(part.name))); err != nil {
				return "", fmt.Errorf("function %s: %s format: %w", f.ID, strings.ToLower(part.name), err)
			}
		}
		entries = append(entries, fmt.Sprintf("  %s: { request: %s; response: %s }", quote(f.ID), types[0], types[1]))
	}
	b.WriteString("\n/** Every function with a request or response format, for connect<Streams, Functions>(url) of @trine/client. */\nexport type Functions = {\n")
	for _, e := range entries {
		b.WriteString(e + "\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// GroupType is the TypeScript type of group ids matching pattern: a
// template literal type with ${string} for each *, or string.
func GroupType(pattern string) string {
	if pattern == "" || pattern == "*" {
		return "string"
	}
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		p = strings.NewReplacer("\\", "\\\\", "`", "\\`", "${", "\\${").Replace(p)
		parts[i] = p
	}
	return "`" + strings.Join(parts, "${string}") + "`"
}

func writeNamed(b *strings.Builder, name string, schema json.RawMessage, doc string) error {
	var root any
	if err := json.Unmarshal(schema, &root); err != nil {
		return err
	}
	g := &gen{root: name, defs: map[string]any{}}
	if m, ok := root.(map[string]any); ok {
		for _, k := range []string{"$defs", "definitions"} {
			if d, ok := m[k].(map[string]any); ok {
				for n, s := range d {
					g.defs[n] = s
				}
			}
		}
	}
	fmt.Fprintf(b, "/** %s */\nexport type %s = %s\n", comment(doc), name, g.ts(root, 0))
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for k := range g.defs {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(b, "export type %s = %s\n", name+Pascal(n), g.ts(g.defs[n], 0))
	}
	b.WriteString("\n")
	return nil
}

type gen struct {
	root string
	defs map[string]any
}

// maxDepth bounds nesting written inline (a schema nested deeper is
// typed unknown there).
const maxDepth = 64

func (g *gen) ts(s any, depth int) string {
	if depth > maxDepth {
		return "unknown"
	}
	switch v := s.(type) {
	case bool:
		if v {
			return "unknown"
		}
		return "never"
	case map[string]any:
		return g.object(v, depth)
	}
	return "unknown"
}

func (g *gen) object(m map[string]any, depth int) string {
	if ref, ok := m["$ref"].(string); ok {
		switch {
		case ref == "#":
			return g.root
		case strings.HasPrefix(ref, "#/$defs/"), strings.HasPrefix(ref, "#/definitions/"):
			n := ref[strings.LastIndex(ref, "/")+1:]
			if _, ok := g.defs[n]; ok && !strings.Contains(n, "~") {
				return g.root + Pascal(n)
			}
		}
		return "unknown"
	}
	if c, ok := m["const"]; ok {
		return literal(c)
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		out := make([]string, len(e))
		for i, x := range e {
			out[i] = literal(x)
		}
		return strings.Join(out, " | ")
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if xs, ok := m[k].([]any); ok && len(xs) > 0 {
			return g.join(xs, " | ", depth)
		}
	}
	if xs, ok := m["allOf"].([]any); ok && len(xs) > 0 {
		return g.join(xs, " & ", depth)
	}
	var types []string
	switch t := m["type"].(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				types = append(types, s)
			}
		}
	default:
		if _, ok := m["properties"]; ok {
			types = []string{"object"}
		} else if _, ok := m["items"]; ok {
			types = []string{"array"}
		}
	}
	if len(types) == 0 {
		return "unknown"
	}
	out := make([]string, 0, len(types))
	for _, t := range types {
		switch t {
		case "string":
			out = append(out, "string")
		case "number", "integer":
			out = append(out, "number")
		case "boolean":
			out = append(out, "boolean")
		case "null":
			out = append(out, "null")
		case "array":
			item := "unknown"
			if it, ok := m["items"]; ok {
				item = g.ts(it, depth+1)
			}
			out = append(out, "Array<"+item+">")
		case "object":
			out = append(out, g.props(m, depth))
		default:
			out = append(out, "unknown")
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return "(" + strings.Join(out, " | ") + ")"
}

func (g *gen) join(xs []any, sep string, depth int) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = g.ts(x, depth+1)
	}
	return "(" + strings.Join(out, sep) + ")"
}

func (g *gen) props(m map[string]any, depth int) string {
	props, _ := m["properties"].(map[string]any)
	required := map[string]bool{}
	if r, ok := m["required"].([]any); ok {
		for _, x := range r {
			if s, ok := x.(string); ok {
				required[s] = true
			}
		}
	}
	extra, hasExtra := m["additionalProperties"]
	if len(props) == 0 {
		if b, ok := extra.(bool); ok && !b {
			return "Record<string, never>"
		}
		if hasExtra {
			return "Record<string, " + g.ts(extra, depth+1) + ">"
		}
		return "Record<string, unknown>"
	}
	var fs []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range props {
			if !yield(k) {
				return
			}
		}
	}) {
		opt := "?"
		if required[k] {
			opt = ""
		}
		fs = append(fs, fmt.Sprintf("%s%s: %s", propName(k), opt, g.ts(props[k], depth+1)))
	}
	return "{ " + strings.Join(fs, "; ") + " }"
}

var ident = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

func propName(k string) string {
	if ident.MatchString(k) {
		return k
	}
	return quote(k)
}

// quote writes s as a string literal that JavaScript reads as s: JSON's,
// which escapes what a JavaScript string may not hold as is (Go's
// strconv.Quote writes escapes such as \U000e0001 that JavaScript reads
// otherwise).
func quote(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// comment makes text, which holds names from whoever defined a stream or
// registered a function, safe inside a /** … */ comment: no "*/" ends it
// early.
func comment(text string) string {
	return strings.ReplaceAll(text, "*/", "*\\/")
}

func literal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "unknown"
	}
	switch v.(type) {
	case string, float64, bool, nil:
		return string(b)
	}
	return "unknown" // objects and arrays as constants: not typed here
}

// Pascal turns a name into a TypeScript identifier part: "todo-items" is
// "TodoItems"; other characters are dropped, a leading digit gets "_".
func Pascal(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if up {
				r = unicode.ToUpper(r)
			}
			b.WriteRune(r)
			up = false
		default:
			up = true
		}
	}
	out := b.String()
	if out == "" || unicode.IsDigit(rune(out[0])) {
		out = "_" + out
	}
	return out
}
