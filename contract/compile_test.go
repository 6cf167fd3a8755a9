package contract

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func mustCompile(t testing.TB, c *Compiler, src string) *Schema {
	t.Helper()
	s, err := c.Compile([]byte(src))
	if err != nil {
		t.Fatalf("Compile(%s) = %v", truncate(src, 200), err)
	}
	return s
}

// refused checks that err is a schema refusal with code invalid_argument
// whose message contains want.
func refused(t *testing.T, err error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrInvalidSchema) || e.Code() != CodeInvalidArgument {
		t.Fatalf("error = %v, want an invalid_argument schema refusal", err)
	}
	if !strings.Contains(e.Message, want) {
		t.Fatalf("message = %q, want it to contain %q", e.Message, want)
	}
}

func TestCompileRefusesReferencesOutsideTheSchema(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"type":"string"}`)
	}))
	t.Cleanup(srv.Close)
	c := NewCompiler(Limits{})
	for name, ref := range map[string]string{
		"http":            srv.URL + "/s.json",
		"http fragment":   srv.URL + "/s.json#/x",
		"file":            "file:///etc/passwd",
		"relative":        "other.json",
		"dynamic":         srv.URL,
		"nested in defs":  srv.URL + "/d",
		"metaschema-like": "https://json-schema.org/draft/2020-12/schema",
	} {
		t.Run(name, func(t *testing.T) {
			kw := "$ref"
			if name == "dynamic" {
				kw = "$dynamicRef"
			}
			src := fmt.Sprintf(`{"properties":{"a":{%q:%q}}}`, kw, ref)
			if name == "nested in defs" {
				src = fmt.Sprintf(`{"$defs":{"x":{"$ref":%q}}}`, ref)
			}
			_, err := c.Compile([]byte(src))
			refused(t, err, "only references within the schema")
		})
	}
	_, err := c.Compile([]byte(`{"$defs":{"x":{"$id":"` + srv.URL + `/x","type":"string"}},"$ref":"#/$defs/x"}`))
	refused(t, err, "$id is allowed only at the root")
	if n := hits.Load(); n != 0 {
		t.Fatalf("the schema server was asked %d times, want 0", n)
	}
}

func TestCompileRefusesOverLimits(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{MaxSchemaBytes: 1000, MaxSchemaDepth: 10})
	big := `{"description":"` + strings.Repeat("x", 1000) + `"}`
	_, err := c.Compile([]byte(big))
	refused(t, err, "over the limit of 1000")
	deep := strings.Repeat(`{"items":`, 10) + `{}` + strings.Repeat(`}`, 10)
	_, err = c.Compile([]byte(deep))
	refused(t, err, "nested 11 deep, over the limit of 10")
	mustCompile(t, c, strings.Repeat(`{"items":`, 9)+`{}`+strings.Repeat(`}`, 9))
}

func TestCompileRefusesWhatDoesNotCompile(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	for name, tc := range map[string]struct{ src, want string }{
		"not json":       {`{"type":`, "not JSON"},
		"not a schema":   {`[1,2]`, "an object or a boolean"},
		"bad type":       {`{"type":5}`, "not a valid draft 2020-12 schema: /type"},
		"bad pattern":    {`{"pattern":"(?<=x)"}`, "pattern"},
		"other draft":    {`{"$schema":"http://json-schema.org/draft-03/schema#"}`, "$schema http://json-schema.org/draft-03/schema#: not one of draft-04, draft-06, draft-07, 2019-09 or 2020-12"},
		"remote $schema": {`{"$schema":"https://example.com/my-meta"}`, "not one of draft-04"},
		"draft-07 ref":   {`{"$schema":"http://json-schema.org/draft-07/schema#","definitions":{"a":{"$ref":"http://example.com/x"}}}`, "only references within the schema"},
		"draft-07 bad":   {`{"$schema":"http://json-schema.org/draft-07/schema#","type":5}`, "not a valid draft-07 schema: /type"},
		"missing ref":    {`{"$ref":"#/$defs/nope"}`, "nope"},
		"missing anchor": {`{"$ref":"#nope"}`, "nope"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := c.Compile([]byte(tc.src))
			refused(t, err, tc.want)
			if strings.Contains(err.Error(), resourceURL) {
				t.Fatalf("message %q names the internal resource", err)
			}
		})
	}
}

func TestCompileRefusesCostlySchemas(t *testing.T) {
	t.Parallel()
	// 30 definitions, each anyOf two $refs to the next: 2^30 paths at one place.
	var defs []string
	for i := range 30 {
		defs = append(defs, fmt.Sprintf(`"d%d":{"anyOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1))
	}
	defs = append(defs, `"d30":{"type":"string"}`)
	dag := `{"$defs":{` + strings.Join(defs, ",") + `},"$ref":"#/$defs/d0"}`
	c := NewCompiler(Limits{})
	for name, tc := range map[string]struct{ src, want string }{
		"anyOf dag":     {dag, "over 256 subschema evaluations"},
		"self ref":      {`{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, "$ref cycle"},
		"allOf self":    {`{"allOf":[{"$ref":"#"}]}`, "$ref cycle"},
		"doubling tree": {`{"properties":{"a":{"allOf":[{"$ref":"#"},{"$ref":"#"}]}}}`, "over 256 subschema evaluations"},
		"anchor dag":    {`{"$defs":{"x":{"$anchor":"x","properties":{"n":{"anyOf":[{"$ref":"#x"},{"$ref":"#x"},{"$ref":"#x"}]}}}},"$ref":"#x"}`, "over 256"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, err := c.Compile([]byte(tc.src))
			refused(t, err, tc.want)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("refusing took %v", d)
			}
		})
	}
	for name, src := range map[string]string{
		"binary tree": `{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"left":{"$ref":"#/$defs/node"},"right":{"$ref":"#/$defs/node"}}}},"$ref":"#/$defs/node"}`,
		"list":        `{"type":"object","properties":{"next":{"anyOf":[{"type":"null"},{"$ref":"#"}]}}}`,
		"json value":  `{"$defs":{"v":{"anyOf":[{"type":["null","boolean","number","string"]},{"type":"array","items":{"$ref":"#/$defs/v"}},{"type":"object","additionalProperties":{"$ref":"#/$defs/v"}}]}},"$ref":"#/$defs/v"}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mustCompile(t, c, src)
		})
	}
}

// TestCompileDrafts: a schema naming draft-04, -06, -07, 2019-09 or
// 2020-12 in $schema (http or https, with or without the empty fragment)
// compiles under that draft's rules, from the metaschemas built into the
// validator: nothing is fetched.
func TestCompileDrafts(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	for _, tc := range []struct {
		name, src, good, bad, want string
	}{
		// draft-07 as schemars and zod-to-json-schema write it: definitions,
		// and $ref siblings ignored.
		{"draft-07", `{"$schema":"http://json-schema.org/draft-07/schema#","title":"Add","type":"object","required":["a"],"properties":{"a":{"$ref":"#/definitions/N","type":"string"}},"definitions":{"N":{"type":"integer","format":"int32"}}}`,
			`{"a":1}`, `{"a":"x"}`, "/a: expected integer, got string"},
		{"draft-07 https", `{"$schema":"https://json-schema.org/draft-07/schema","items":[{"type":"string"}],"additionalItems":false}`,
			`["x"]`, `["x",1]`, "(root): additionalItems"},
		{"draft-06", `{"$schema":"http://json-schema.org/draft-06/schema#","exclusiveMaximum":3}`, `2`, `3`, "exclusiveMaximum"},
		{"draft-04", `{"$schema":"http://json-schema.org/draft-04/schema#","maximum":3,"exclusiveMaximum":true}`, `2`, `3`, "(root): exclusiveMaximum"},
		{"2019-09", `{"$schema":"https://json-schema.org/draft/2019-09/schema","dependentRequired":{"a":["b"]}}`, `{"a":1,"b":2}`, `{"a":1}`, "'b' required, if 'a' exists"},
		{"2020-12", `{"$schema":"https://json-schema.org/draft/2020-12/schema","prefixItems":[{"type":"string"}],"items":false}`, `["x"]`, `["x",1]`, "/1: not allowed (false schema)"},
		{"none", `{"prefixItems":[{"type":"string"}],"items":false}`, `["x"]`, `["x",1]`, "/1: not allowed (false schema)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustCompile(t, c, tc.src)
			if err := s.Validate([]byte(tc.good)); err != nil {
				t.Fatalf("%s: %v", tc.good, err)
			}
			err := s.Validate([]byte(tc.bad))
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("%s: %v, want %q", tc.bad, err, tc.want)
			}
		})
	}
	// The bound on evaluations reaches into draft-07's forms too: tuple
	// items, additionalItems and dependencies.
	var defs []string
	for i := range 30 {
		defs = append(defs, fmt.Sprintf(`"d%d":{"anyOf":[{"$ref":"#/definitions/d%d"},{"$ref":"#/definitions/d%d"}]}`, i, i+1, i+1))
	}
	defs = append(defs, `"d30":{"type":"string"}`)
	for name, root := range map[string]string{
		"tuple items":     `"items":[{"$ref":"#/definitions/d0"}]`,
		"additionalItems": `"additionalItems":{"$ref":"#/definitions/d0"}`,
		"dependencies":    `"dependencies":{"a":{"$ref":"#/definitions/d0"}}`,
	} {
		_, err := c.Compile([]byte(`{"$schema":"http://json-schema.org/draft-07/schema#","definitions":{` + strings.Join(defs, ",") + `},` + root + `}`))
		if err == nil {
			t.Fatalf("%s: a 2^30 anyOf chain compiled", name)
		}
		refused(t, err, "over 256 subschema evaluations")
	}
	_, err := c.Compile([]byte(`{"$schema":"https://json-schema.org/draft/2019-09/schema","$recursiveAnchor":true,"properties":{"a":{"allOf":[{"$recursiveRef":"#"},{"$recursiveRef":"#"}]}}}`))
	refused(t, err, "over 256 subschema evaluations")
}

// TestCatastrophicPatternIsLinear: patterns are RE2, so the classic
// backtracking bomb, which a backtracking engine would take 2^n steps on,
// matches in linear time (about 0.6 µs a character, 10x under -race).
func TestCatastrophicPatternIsLinear(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	s := mustCompile(t, c, `{"type":"object","properties":{"s":{"type":"string","pattern":"^(a+)+$"}},"patternProperties":{"^(a|aa)+$":{"type":"string"}}}`)
	long := strings.Repeat("a", 50_000) + "!"
	start := time.Now()
	err := s.Validate([]byte(`{"s":"` + long + `","` + long + `":"x"}`))
	if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), `/s: pattern: does not match "^(a+)+$"`) {
		t.Fatalf("Validate = %v, want a pattern violation at /s", err)
	}
	// RE2 matches in linear time: the bound is generous, so that only a
	// backtracking engine (minutes) fails it, not a starved machine.
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("validation took %v", d)
	}
}

// TestPatternMatchingIsBounded: RE2 is linear in the input but also in
// the pattern's program, so a{1000} repeated 100 times took 4.5 minutes on
// 100,000 characters. Patterns are capped at 1000 instructions, and a
// value's strings times the instructions that can apply to them at most
// MaxPatternWork.
func TestPatternMatchingIsBounded(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	_, err := c.Compile([]byte(`{"pattern":"` + strings.Repeat("a{1000}", 100) + `"}`))
	refused(t, err, "instructions, over the limit of 1000")
	_, err = c.Compile([]byte(`{"patternProperties":{"[a-z]{0,998}":{}}}`))
	refused(t, err, "pattern compiles to 1998 instructions, over the limit of 1000")
	s := mustCompile(t, c, `{"type":"array","items":{"type":"string","pattern":"[a-z]{0,495}$"}}`)
	start := time.Now()
	err = s.Validate([]byte(`["` + strings.Repeat("a", 100_000) + `"]`))
	if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "(root): 100000 bytes of strings, over the 10070 this schema's patterns allow (993 pattern instructions)") {
		t.Fatalf("Validate(100,000 characters) = %v", err)
	}
	if err := s.Validate([]byte(`["` + strings.Repeat("a", 5_000) + `"]`)); err != nil {
		t.Fatalf("Validate(5,000 characters) = %v", err)
	}
	// RE2 matches in linear time: the bound is generous, so that only a
	// backtracking engine (minutes) fails it, not a starved machine.
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("validation took %v", d)
	}
	plain := mustCompile(t, c, `{"type":"array","items":{"type":"string"}}`)
	if err := plain.Validate([]byte(`["` + strings.Repeat("a", 1_000_000) + `"]`)); err != nil {
		t.Fatalf("Validate(1,000,000 characters, no pattern) = %v", err)
	}
}

func TestCompileCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{MaxCachedSchemas: 2, MaxCachedBytes: 60})
	a := mustCompile(t, c, `{"type": "string"}`)
	if b := mustCompile(t, c, "{\n  \"type\":\"string\"\n}"); b != a {
		t.Fatal("the same schema, spaced differently, compiled twice")
	}
	mustCompile(t, c, `{"type":"number"}`)
	mustCompile(t, c, `{"type":"boolean"}`)
	if n, _ := c.cache.len(); n != 2 {
		t.Fatalf("cache holds %d schemas, want 2", n)
	}
	if b := mustCompile(t, c, `{"type":"string"}`); b == a {
		t.Fatal("the least recently used schema was not evicted")
	}
	mustCompile(t, c, `{"type":"string","description":"`+strings.Repeat("x", 40)+`"}`)
	if n, size := c.cache.len(); size > 60 {
		t.Fatalf("cache holds %d schemas of %d bytes, want at most 60", n, size)
	}
}

// "$id" and "$ref" are keywords only where a schema is: a property (or a
// $defs entry) of that name, and data under const, enum, default and
// examples, are not refused as references or ids; a remote $ref in a
// schema under such a name still is.
func TestKeywordNamesAsPropertiesAndData(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	s := mustCompile(t, c, `{"type":"object",
		"properties":{"$id":{"type":"string"},"$ref":{"type":"string","format":"uri"},"$defs":{"type":"object"}},
		"$defs":{"$id":{"type":"integer"}},
		"default":{"$ref":"https://example.com/x","$id":"urn:x"},
		"examples":[{"$id":"a","$ref":"file:///etc/passwd"}],
		"enum":[{"$id":"a","$ref":"https://example.com/x"},{"$id":"b"}]}`)
	if err := s.Validate([]byte(`{"$id":"a","$ref":"https://example.com/x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate([]byte(`{"$id":"c"}`)); err == nil {
		t.Fatal("a value off the enum accepted")
	}
	_, err := c.Compile([]byte(`{"properties":{"$id":{"$ref":"https://example.com/x"}}}`))
	refused(t, err, `/properties/$id/$ref "https://example.com/x": only references within the schema`)
	_, err = c.Compile([]byte(`{"properties":{"a":{"$id":"https://example.com/x"}}}`))
	refused(t, err, "$id is allowed only at the root")
}
