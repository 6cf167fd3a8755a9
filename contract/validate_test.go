package contract

import (
	"errors"
	"strings"
	"testing"
)

const todoSchema = `{
	"type": "object",
	"properties": {
		"title": {"type": "string", "minLength": 1},
		"done": {"type": "boolean"},
		"tags": {"type": "array", "items": {"type": "string"}},
		"owner": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
	},
	"required": ["title"],
	"additionalProperties": false
}`

func TestValidateReportsPointerAndRule(t *testing.T) {
	t.Parallel()
	s := mustCompile(t, NewCompiler(Limits{}), todoSchema)
	for name, tc := range map[string]struct{ value, want string }{
		"type":       {`{"title":1}`, "/title: expected string, got number"},
		"nested":     {`{"title":"x","owner":{"id":"7"}}`, "/owner/id: expected integer, got string"},
		"item":       {`{"title":"x","tags":["a",2]}`, "/tags/1: expected string, got number"},
		"required":   {`{"done":true}`, "/title: required"},
		"additional": {`{"title":"x","color":"red"}`, "/color: not allowed (additionalProperties)"},
		"minLength":  {`{"title":""}`, "/title: minLength: "},
		"root":       {`"x"`, "(root): expected object, got string"},
		"not json":   {`{"title":`, "value is not JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := s.Validate([]byte(tc.value))
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalidValue) || e.Code() != CodeInvalidArgument {
				t.Fatalf("Validate(%s) = %v, want an invalid_argument value error", tc.value, err)
			}
			if !strings.HasPrefix(e.Message, tc.want) {
				t.Fatalf("Validate(%s) = %q, want it to start with %q", tc.value, e.Message, tc.want)
			}
		})
	}
	if err := s.Validate([]byte(`{"title":"x","done":false,"tags":["a"],"owner":{"id":3}}`)); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
}

// TestValidateKeepsNumberPrecision: 2^53+1 is not rounded to 2^53.
func TestValidateKeepsNumberPrecision(t *testing.T) {
	t.Parallel()
	s := mustCompile(t, NewCompiler(Limits{}), `{"type":"integer","maximum":9007199254740992}`)
	if err := s.Validate([]byte(`9007199254740992`)); err != nil {
		t.Fatalf("Validate(2^53) = %v", err)
	}
	if err := s.Validate([]byte(`9007199254740993`)); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("Validate(2^53+1) = %v, want a maximum violation", err)
	}
}

func TestValidateErrorsAreBounded(t *testing.T) {
	t.Parallel()
	s := mustCompile(t, NewCompiler(Limits{}), `{"type":"array","items":{"type":"string","maxLength":1}}`)
	long := strings.Repeat("é", 2000)
	items := make([]string, 100)
	for i := range items {
		items[i] = `"` + long + `"`
	}
	err := s.Validate([]byte("[" + strings.Join(items, ",") + "]"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate = %v", err)
	}
	if len(e.Problems) != DefaultMaxProblems || len(e.Message) > DefaultMaxMessageBytes {
		t.Fatalf("%d problems in %d bytes, want %d in at most %d", len(e.Problems), len(e.Message), DefaultMaxProblems, DefaultMaxMessageBytes)
	}
	if !strings.HasPrefix(e.Message, "/0: maxLength: ") {
		t.Fatalf("message = %q", e.Message)
	}
}
