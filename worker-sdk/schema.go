package trine

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"
)

// SchemaFor returns the JSON Schema (draft 2020-12) of T as encoding/json
// writes it, for a stream's contract: struct fields by their json names,
// fields without omitempty required, no properties beyond the struct's,
// time.Time as a date-time string, []byte as base64. Nil pointers, slices,
// maps and interfaces, which encoding/json writes as null, may be null.
// Named struct types go under $defs, so recursive types work. Tags of
// github.com/invopop/jsonschema (`jsonschema:"minLength=1,enum=a|b"`) add
// constraints.
//
// It fails for a T that encoding/json cannot write (a channel, a function,
// a complex number).
func SchemaFor[T any]() (json.RawMessage, error) {
	t := reflect.TypeFor[T]()
	if err := encodable(t, map[reflect.Type]bool{}); err != nil {
		return nil, fmt.Errorf("schema for %s: %w", t, err)
	}
	r := &jsonschema.Reflector{Anonymous: true}
	raw, err := json.Marshal(r.ReflectFromType(t))
	if err != nil {
		return nil, fmt.Errorf("schema for %s: %w", t, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("schema for %s: %w", t, err)
	}
	defs, _ := doc["$defs"].(map[string]any)
	allowNulls(t, doc, defs, map[reflect.Type]bool{})
	return json.Marshal(doc)
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// encodable refuses the kinds encoding/json cannot write.
func encodable(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] || t.Implements(jsonMarshaler) || t.Implements(textMarshaler) {
		return nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("encoding/json cannot write a %s", t.Kind())
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return encodable(t.Elem(), seen)
	case reflect.Struct:
		for f := range t.Fields() {
			if !f.IsExported() && !f.Anonymous || f.Tag.Get("json") == "-" {
				continue
			}
			if err := encodable(f.Type, seen); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
	}
	return nil
}

// allowNulls walks t beside its schema s and lets null stand wherever
// encoding/json writes a nil as null: a pointer, slice, map or interface
// field without omitempty, an item, a map value.
func allowNulls(t reflect.Type, s map[string]any, defs map[string]any, seen map[reflect.Type]bool) {
	if s == nil || t.Implements(jsonMarshaler) || t.Implements(textMarshaler) {
		return
	}
	if ref, ok := s["$ref"].(string); ok {
		def, _ := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		if seen[t] {
			return
		}
		seen[t] = true
		s = def
	}
	switch t.Kind() {
	case reflect.Pointer:
		allowNulls(t.Elem(), s, defs, seen)
	case reflect.Slice, reflect.Array:
		if items, ok := s["items"].(map[string]any); ok {
			s["items"] = orNull(t.Elem(), items)
			allowNulls(t.Elem(), items, defs, seen)
		}
	case reflect.Map:
		if values, ok := s["additionalProperties"].(map[string]any); ok {
			s["additionalProperties"] = orNull(t.Elem(), values)
			allowNulls(t.Elem(), values, defs, seen)
		}
	case reflect.Struct:
		props, _ := s["properties"].(map[string]any)
		for f := range t.Fields() {
			name, omitempty := jsonName(f)
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					allowNulls(ft, s, defs, seen) // promoted fields
				}
				continue
			}
			p, ok := props[name].(map[string]any)
			if !ok {
				continue
			}
			if !omitempty {
				props[name] = orNull(f.Type, p)
			}
			allowNulls(f.Type, p, defs, seen)
		}
	}
}

// orNull returns s, allowing null too when a nil t is written as null.
func orNull(t reflect.Type, s map[string]any) any {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
	default:
		return s
	}
	if t.Implements(jsonMarshaler) || t.Implements(textMarshaler) {
		return s
	}
	if typ, ok := s["type"].(string); ok {
		s["type"] = []any{typ, "null"}
		return s
	}
	if _, ok := s["$ref"]; ok {
		return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
	}
	return s // no type: null is allowed already
}

// jsonName is a field's name in encoding/json's output ("" for an
// embedded struct whose fields are promoted) and whether it has omitempty.
func jsonName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	omitempty := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
	if f.Anonymous && name == "" {
		return "", omitempty
	}
	if name == "" {
		name = f.Name
	}
	return name, omitempty
}
