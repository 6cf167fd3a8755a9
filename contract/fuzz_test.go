package contract

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fuzzLimits keep each fuzz input cheap while exercising every limit.
var fuzzLimits = Limits{MaxSchemaBytes: 8 << 10, MaxSchemaDepth: 16, MaxEvaluations: 64}

// slowInput is how long one input may take before the fuzzer fails it.
const slowInput = 2 * time.Second

func fuzzSeeds(f *testing.F) {
	var defs []string
	for i := range 12 {
		defs = append(defs, `"d`+string(rune('a'+i))+`":{"anyOf":[{"$ref":"#/$defs/d`+string(rune('b'+i))+`"},{"$ref":"#/$defs/d`+string(rune('b'+i))+`"}]}`)
	}
	defs = append(defs, `"dm":{"type":"string"}`)
	for _, s := range []string{
		todoSchema,
		`true`, `false`, `{}`, `[]`, `1`, `{"type":5}`,
		`{"$ref":"#"}`,
		`{"$ref":"http://127.0.0.1:1/x"}`,
		`{"$defs":{` + strings.Join(defs, ",") + `},"$ref":"#/$defs/da"}`,
		`{"properties":{"a":{"allOf":[{"$ref":"#"},{"$ref":"#"}]}}}`,
		`{"pattern":"^(a+)+$"}`,
		`{"patternProperties":{"(x+x+)+y":{"type":"string"}}}`,
		`{"type":"array","uniqueItems":true,"items":{"multipleOf":0.0001}}`,
		`{"$dynamicAnchor":"n","properties":{"c":{"$dynamicRef":"#n"}}}`,
		`{"unevaluatedProperties":false,"anyOf":[{"properties":{"a":true}},{"properties":{"b":true}}]}`,
		`{"if":{"type":"string"},"then":{"minLength":3},"else":{"type":"number","maximum":1e400}}`,
		`{"format":"regex"}`,
		`{"minimum":0,"multipleOf":3}`,
		`{"maximum":1e100000000}`,
	} {
		for _, v := range []string{`{"title":1}`, `"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"`, `[1,1.0,1e0]`, `{"a":{"a":{"a":{}}}}`, `1e400`, `1e100000000`, `[1e-100000000]`, `null`, `{`} {
			f.Add(s, v)
		}
	}
}

// FuzzValidate: compiling any schema and validating any value neither
// panics nor stalls, and every refusal is an *Error with a code.
func FuzzValidate(f *testing.F) {
	fuzzSeeds(f)
	c := NewCompiler(fuzzLimits)
	f.Fuzz(func(t *testing.T, schema, value string) {
		defer watchdog(schema, value)()
		start := time.Now()
		s, err := c.Compile([]byte(schema))
		if err != nil {
			checkRefusal(t, err, ErrInvalidSchema)
			return
		}
		checkRefusal(t, s.Validate([]byte(value)), ErrInvalidValue)
		if d := time.Since(start); d > slowInput {
			t.Fatalf("compiling and validating took %v\nschema %q\nvalue %q", d, schema, value)
		}
	})
}

// FuzzCompatible: comparing any two schemas neither panics nor stalls,
// and a schema is compatible with itself in every mode.
func FuzzCompatible(f *testing.F) {
	fuzzSeeds(f)
	c := NewCompiler(fuzzLimits)
	f.Fuzz(func(t *testing.T, old, new string) {
		defer watchdog(old, new)()
		so, err := c.Compile([]byte(old))
		if err != nil {
			return
		}
		start := time.Now()
		if got := Compatible(so, so, FullTransitive, 3); len(got) != 0 {
			t.Fatalf("schema %q is incompatible with itself: %q", old, got)
		}
		if sn, err := c.Compile([]byte(new)); err == nil {
			Compatible(so, sn, Full, 3)
		}
		if d := time.Since(start); d > slowInput {
			t.Fatalf("comparing took %v\nold %q\nnew %q", d, old, new)
		}
	})
}

// watchdog crashes the process, which makes the fuzzer keep the input,
// when one input runs far past slowInput without finishing.
func watchdog(a, b string) (stop func()) {
	t := time.AfterFunc(5*slowInput, func() {
		panic(fmt.Sprintf("input still running after %v:\n%q\n%q", 5*slowInput, truncate(a, 2000), truncate(b, 2000)))
	})
	return func() { t.Stop() }
}

func checkRefusal(t *testing.T, err error, kind error) {
	t.Helper()
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, kind) || e.Code() != CodeInvalidArgument {
		t.Fatalf("error %v (%T) is not an invalid_argument %v", err, err, kind)
	}
	if len(e.Message) > DefaultMaxMessageBytes {
		t.Fatalf("message of %d bytes", len(e.Message))
	}
}
