package contract

import (
	"context"
	"testing"
)

// tenFields is a typical item schema: ten fields of the common kinds.
const tenFields = `{
	"type": "object",
	"properties": {
		"id": {"type": "string", "minLength": 1, "maxLength": 64},
		"title": {"type": "string", "maxLength": 200},
		"done": {"type": "boolean"},
		"priority": {"type": "integer", "minimum": 0, "maximum": 5},
		"estimate": {"type": "number", "minimum": 0},
		"status": {"enum": ["open", "doing", "closed"]},
		"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
		"owner": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}, "required": ["id"]},
		"due": {"type": "string", "format": "date-time"},
		"note": {"type": ["string", "null"]}
	},
	"required": ["id", "title", "done"],
	"additionalProperties": false
}`

const tenFieldsValue = `{"id":"t-1","title":"write the docs","done":false,"priority":2,"estimate":1.5,"status":"open","tags":["docs","contracts"],"owner":{"id":7,"name":"ann"},"due":"2026-12-08T09:00:00Z","note":null}`

// BenchmarkValidate is the cost of checking one item (decode included)
// against a 10-field schema.
func BenchmarkValidate(b *testing.B) {
	s := mustCompile(b, NewCompiler(Limits{}), tenFields)
	value := []byte(tenFieldsValue)
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Validate(value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateRefused is the cost of refusing an item, message
// included.
func BenchmarkValidateRefused(b *testing.B) {
	s := mustCompile(b, NewCompiler(Limits{}), tenFields)
	value := []byte(`{"id":"t-1","title":1,"done":false}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Validate(value); err == nil {
			b.Fatal("valid")
		}
	}
}

// BenchmarkRegistryValidateItem is what a write pays: the stream's
// contract from the registry's memory, then the check.
func BenchmarkRegistryValidateItem(b *testing.B) {
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	ctx := context.Background()
	if _, err := r.Define(ctx, Definition{Stream: "todos", Version: 1, Item: []byte(tenFields)}); err != nil {
		b.Fatal(err)
	}
	value := []byte(tenFieldsValue)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := r.Contract(ctx, "todos")
			if err != nil {
				b.Fatal(err)
			}
			if err := c.ValidateItem(value); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCompileCached is the cost of compiling a schema already in the
// cache (compacting and hashing its source).
func BenchmarkCompileCached(b *testing.B) {
	c := NewCompiler(Limits{})
	src := []byte(tenFields)
	mustCompile(b, c, tenFields)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Compile(src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompile is the cost of compiling a 10-field schema afresh,
// including the evaluation bound.
func BenchmarkCompile(b *testing.B) {
	src := []byte(tenFields)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewCompiler(Limits{}).Compile(src); err != nil {
			b.Fatal(err)
		}
	}
}
