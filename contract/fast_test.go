package contract

import (
	"bytes"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// full is the full validator's verdict, without the fast path.
func full(s *Schema, value []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return err
	}
	return s.ValidateDecoded(v)
}

// fastSchemas are schemas with a fast path; fastCases are values for
// them, some valid, many at the edges.
var fastSchemas = []string{
	tenFields,
	todoSchema,
	`{"$defs":{"T":{"additionalProperties":false,"properties":{"a":{"type":"string"},"n":{"$ref":"#/$defs/T"},"p":{"type":["integer","null"]},"s":{"items":{"type":"string"},"type":"array"},"t":{"format":"date-time","type":"string"}},"required":["a","p","t"],"type":"object"}},"$ref":"#/$defs/T","$schema":"https://json-schema.org/draft/2020-12/schema"}`,
	`{"type":"number","exclusiveMinimum":0,"maximum":1.5}`,
	`{"type":"integer","minimum":-3,"exclusiveMaximum":9007199254740992}`,
	`{"const":"x"}`,
	`{"enum":["a",true,null]}`,
	`{"type":"string","pattern":"^[a-z]+$","minLength":2,"maxLength":3}`,
	`{"type":"string","format":"email"}`,
	`{"items":{"type":"array","items":{"type":"integer"},"minItems":1},"maxItems":2}`,
	`{"properties":{"a":false,"b":true}}`,
	`{"required":["a","b"],"minimum":1}`,
	`true`,
}

var fastCases = []string{
	tenFieldsValue,
	`{"id":"t-1","title":"x","done":true}`, `{"id":"","title":"x","done":true}`, `{"id":"t","title":"x","done":true,"extra":1}`,
	`{"id":"t","title":"x","done":true,"priority":5}`, `{"id":"t","title":"x","done":true,"priority":6}`, `{"id":"t","title":"x","done":true,"priority":5.0}`,
	`{"id":"t","title":"x","done":true,"priority":4.5}`, `{"id":"t","title":"x","done":true,"estimate":-0.0}`, `{"id":"t","title":"x","done":true,"estimate":-1e-400}`,
	`{"id":"t","title":"x","done":true,"due":"2026-13-01T00:00:00Z"}`, `{"id":"t","title":"x","done":true,"status":"gone"}`, `{"id":"t","title":"x","done":true,"note":1}`,
	`{"id":"t","title":"x","done":true,"owner":{"name":"a"}}`, `{"id":"t","title":"x","done":true,"id":"u"}`, `{"id":"\u0074","title":"x","done":true}`,
	`{"title":"milk"}`, `{"title":""}`, `{"title":"a","owner":{"id":1.0}}`, `{"title":"a","tags":["x",1]}`, `{"title":"a","owner":{"id":12345678901234567890}}`,
	`{"a":"x","p":null,"t":"2026-12-07T08:00:00Z"}`, `{"a":"x","p":1,"t":"2026-12-07T08:00:00Z","n":{"a":"y","p":2,"t":"2026-12-07T08:00:00+01:00","s":["q"]}}`,
	`{"a":"x","p":1,"t":"yesterday"}`, `{"a":"x","t":"2026-12-07T08:00:00Z"}`, `{"a":"x","p":1,"t":"2026-12-07T08:00:00Z","n":{"a":1}}`,
	`0`, `1.5`, `1.5000000000000001`, `1.4999999999999999`, `-3`, `-4`, `9007199254740991`, `9007199254740992`, `9007199254740993`, `1e-400`, `1e400`, `0.0`,
	`"x"`, `"y"`, `"ab"`, `"abcd"`, `"a"`, `"AB"`, `"ab\n"`, `"\u00e9\u00e9"`, `"ann@example.com"`, `"not an email"`, `"\xff\xfe"`,
	`true`, `false`, `null`, `"a"`, `[[1],[2]]`, `[[1],[2],[3]]`, `[[]]`, `[[1.0]]`, `[]`, `{}`, `{"a":1}`, `{"b":1}`, `{"a":1,"b":2}`,
	`{"a":1,"b":0}`, `{"a":1,"b":"x"}`, ` {"title" : "a" } `, `{"title":"a"}x`, `{"title":"a",}`, `[1,]`, `{"title":"a"`, `-`, `01`, `+1`, `1.`, `"\ud800"`,
	`{"title":"a","owner":{"id":1,"id":"x"}}`, strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70),
}

// TestFastPathAgrees: the fast path says "valid" only where the full
// validator does, and it decides the plain valid values.
func TestFastPathAgrees(t *testing.T) {
	c := NewCompiler(Limits{})
	decided := 0
	for _, src := range fastSchemas {
		s := mustCompile(t, c, src)
		if s.fast == nil {
			t.Fatalf("schema %s has no fast path", src)
		}
		for _, v := range fastCases {
			fast := s.fastValid([]byte(v))
			if fast {
				decided++
				if err := full(s, []byte(v)); err != nil {
					t.Errorf("schema %s\nvalue %s\nthe fast path accepts what the validator refuses: %v", src, v, err)
				}
			}
		}
	}
	if decided < 40 {
		t.Fatalf("the fast path decided only %d values", decided)
	}
	s := mustCompile(t, c, tenFields)
	if !s.fastValid([]byte(tenFieldsValue)) {
		t.Fatal("the fast path does not decide the 10-field item")
	}
	for _, src := range []string{`{"anyOf":[{"type":"string"}]}`, `{"multipleOf":2}`, `{"properties":{"a":{"$ref":"#/properties/b"},"b":{}}}`, `{"additionalProperties":{"type":"string"}}`, `{"enum":[1]}`} {
		if mustCompile(t, c, src).fast != nil {
			t.Errorf("schema %s has a fast path", src)
		}
	}
}

// FuzzFastPathAgrees: for any value, the fast path's "valid" is the full
// validator's.
func FuzzFastPathAgrees(f *testing.F) {
	for i := range fastSchemas {
		for _, v := range fastCases {
			f.Add(i, v)
		}
	}
	c := NewCompiler(Limits{})
	var schemas []*Schema
	for _, src := range fastSchemas {
		s, err := c.Compile([]byte(src))
		if err != nil {
			f.Fatal(err)
		}
		schemas = append(schemas, s)
	}
	f.Fuzz(func(t *testing.T, i int, value string) {
		if i < 0 {
			i = -i
		}
		s := schemas[i%len(schemas)]
		if s.fastValid([]byte(value)) {
			if err := full(s, []byte(value)); err != nil {
				t.Fatalf("schema %s\nvalue %q\nthe fast path accepts what the validator refuses: %v", s.source, value, err)
			}
		}
	})
}
