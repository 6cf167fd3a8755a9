package contract

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
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

// TestHugeNumbersAreRefused: a number the validator would turn into a
// million-digit fraction (150 ms each) or fail to (a nil dereference) is
// refused first, in a value and in a schema.
func TestHugeNumbersAreRefused(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	s := mustCompile(t, c, `{"type":"object","properties":{"n":{"minimum":0,"multipleOf":3}}}`)
	for _, n := range []string{`1e100000000`, `1e-100000000`, `1e1000000`, `1` + strings.Repeat("0", 200), `1E+401`} {
		err := s.Validate([]byte(`{"n":` + n + `}`))
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalidValue) || !strings.HasPrefix(e.Message, "/n: number out of range") {
			t.Errorf("Validate(%s) = %v, want /n: number out of range", truncate(n, 40), err)
		}
		_, err = c.Compile([]byte(`{"maximum":` + n + `}`))
		refused(t, err, "/maximum: number out of range")
	}
	for _, n := range []string{`1e400`, `-1.5E-400`, `123456789012345678901234567890123456789`, `0.000000000000000000001`} {
		if err := s.Validate([]byte(`{"n":` + n + `}`)); errors.Is(err, ErrInvalidValue) && strings.Contains(err.Error(), "out of range") {
			t.Errorf("Validate(%s) = %v, want it checked", n, err)
		}
		mustCompile(t, c, `{"maximum":`+n+`}`)
	}
}

// TestDeepValuesAreRefused: the validator's cost grows with the square of
// a value's depth (9000 nested arrays, 18 KB, took 8 s against a
// recursive schema), so values nested deeper than MaxValueDepth are
// refused before it runs.
func TestDeepValuesAreRefused(t *testing.T) {
	t.Parallel()
	s := mustCompile(t, NewCompiler(Limits{}), `{"$defs":{"v":{"anyOf":[{"type":["null","number"]},{"type":"array","items":{"$ref":"#/$defs/v"}}]}},"$ref":"#/$defs/v"}`)
	start := time.Now()
	err := s.Validate([]byte(strings.Repeat(`[`, 9000) + strings.Repeat(`]`, 9000)))
	if !errors.Is(err, ErrInvalidValue) || err.Error() != "(root): nested 9000 deep, over the limit of 64" {
		t.Fatalf("Validate(9000 deep) = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusing took %v", d)
	}
	if err := s.Validate([]byte(strings.Repeat(`[`, 64) + strings.Repeat(`]`, 64))); err != nil {
		t.Fatalf("Validate(64 deep) = %v", err)
	}
}

// TestValidationWorkIsBounded: a value's nodes times the subschemas the
// schema evaluates at one place is bounded, so a schema that is allowed
// many evaluations allows smaller values, and a plain one large ones.
func TestValidationWorkIsBounded(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	var branches []string
	for i := range 200 {
		branches = append(branches, `{"type":"number","minimum":`+strconv.Itoa(i)+`}`)
	}
	wide := mustCompile(t, c, `{"type":"array","items":{"anyOf":[`+strings.Join(branches, ",")+`]}}`)
	nums := strings.TrimSuffix(strings.Repeat("-1,", 20_000), ",")
	start := time.Now()
	err := wide.Validate([]byte("[" + nums + "]"))
	if !errors.Is(err, ErrInvalidValue) || err.Error() != "(root): 20001 JSON nodes, over the 9950 this schema allows (201 subschema evaluations and enum comparisons at one place)" {
		t.Fatalf("Validate(20,000 items, 201 evaluations each) = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusing took %v", d)
	}
	plain := mustCompile(t, c, `{"type":"array","items":{"type":"number"}}`)
	if err := plain.Validate([]byte("[" + nums + "]")); err != nil {
		t.Fatalf("Validate(20,000 numbers, plain schema) = %v", err)
	}
}

// A refusal names the pointer and the rule, never the value: it reaches
// the writer, the engine's log (a result breaking its response_format) and
// a definer re-checking items it may not read.
func TestFormatRefusalsDoNotRepeatTheValue(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	const secret = "SeCrEt-9f8a(:/[@@"
	for _, f := range []string{"date-time", "date", "time", "email", "idn-email", "uri", "uri-reference", "iri", "iri-reference", "uri-template", "uuid", "ipv4", "ipv6", "hostname", "idn-hostname", "regex", "duration", "period", "json-pointer", "relative-json-pointer", "semver"} {
		s := mustCompile(t, c, `{"properties":{"x":{"format":"`+f+`"}}}`)
		err := s.Validate([]byte(`{"x":"` + secret + `"}`))
		if err == nil {
			continue // a format that takes anything
		}
		if msg := err.Error(); strings.Contains(msg, "SeCrEt") || strings.Contains(msg, "9f8a") || !strings.Contains(msg, "/x: format: not a valid "+f) {
			t.Errorf("format %s: %q, want the pointer and the rule without the value", f, msg)
		}
	}
}

// An enum is compared value by value: a long one multiplies a value's
// validation work as subschemas do, and counts in the bound on it. A
// refusal does not spell out the allowed values (formatting 20,000 of them
// for each failing item took 96 s for an array of 1000 items, 4 KB).
func TestLongEnumsCountInValidationWork(t *testing.T) {
	t.Parallel()
	values := make([]string, 20_000)
	for i := range values {
		values[i] = strconv.Quote("v" + strconv.Itoa(i))
	}
	s := mustCompile(t, NewCompiler(Limits{}), `{"type":"array","items":{"enum":[`+strings.Join(values, ",")+`]}}`)
	start := time.Now()
	err := s.Validate([]byte(`[` + strings.TrimSuffix(strings.Repeat(`"x",`, 200), ",") + `]`))
	if err == nil || !strings.Contains(err.Error(), "(root): 201 JSON nodes, over the 99 this schema allows") {
		t.Fatalf("200 items against an enum of 20000 values: %v, want refused before validation", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the refusal took %s", d)
	}
	if err := s.Validate([]byte(`["v19999","v0"]`)); err != nil {
		t.Fatal(err)
	}
	err = s.Validate([]byte(`["v1","x"]`))
	if err == nil || err.Error() != "/1: enum: not one of the 20000 values allowed" {
		t.Fatalf("one item off the enum: %v", err)
	}
}
