package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Draft202012 is the $schema of draft 2020-12, which a schema naming none
// is read as.
const Draft202012 = "https://json-schema.org/draft/2020-12/schema"

// drafts are the drafts a schema may name in $schema, by its URL without
// the scheme (http or https) and the empty fragment. Their metaschemas
// are built into the validator: naming one fetches nothing.
var drafts = map[string]string{
	"json-schema.org/draft-04/schema":      "draft-04",
	"json-schema.org/draft-06/schema":      "draft-06",
	"json-schema.org/draft-07/schema":      "draft-07",
	"json-schema.org/draft/2019-09/schema": "draft 2019-09",
	"json-schema.org/draft/2020-12/schema": draft2020,
}

// draft2020 is draft 2020-12's name in messages.
const draft2020 = "draft 2020-12"

// draftOf returns the name of the draft the $schema URL u names, or false.
func draftOf(u string) (string, bool) {
	u = strings.TrimSuffix(u, "#")
	if rest, ok := strings.CutPrefix(u, "http://"); ok {
		u = rest
	} else if rest, ok := strings.CutPrefix(u, "https://"); ok {
		u = rest
	} else {
		return "", false
	}
	name, ok := drafts[u]
	return name, ok
}

// resourceURL is where a schema being compiled lives. No loader can reach
// it: every $ref must be a fragment of the schema itself.
const resourceURL = "urn:trine:contract"

// Compiler compiles schemas and keeps the compiled ones, by the digest of
// their source, within Limits.MaxCachedSchemas and MaxCachedBytes.
type Compiler struct {
	limits Limits
	cache  *lru[[sha256.Size]byte, *Schema]
}

// NewCompiler returns a Compiler with the given limits (zero fields take
// their defaults).
func NewCompiler(limits Limits) *Compiler {
	l := limits.withDefaults()
	return &Compiler{limits: l, cache: newLRU[[sha256.Size]byte, *Schema](l.MaxCachedSchemas, l.MaxCachedBytes)}
}

// Limits returns the limits in force, defaults applied.
func (c *Compiler) Limits() Limits { return c.limits }

// Schema is a compiled schema. It is immutable and safe for concurrent use.
type Schema struct {
	source  []byte            // compact JSON
	doc     any               // source decoded, numbers as json.Number
	anchors map[string]string // $anchor name -> JSON pointer
	// patternWork is the most pattern instructions one string can meet at
	// one place of a value; a value's strings times it bound its matching.
	patternWork int64
	// evaluations is the most subschemas evaluated at one place of a
	// value; a value's nodes times it bound its validation.
	evaluations int64
	sch         *jsonschema.Schema
	fast        *fastNode // nil: every value goes to sch
	limits      Limits
	draft       string // the draft's name in messages ("draft-07")
}

// Source returns the schema as compact JSON. The caller must not modify it.
func (s *Schema) Source() json.RawMessage { return s.source }

// Compile compiles a JSON Schema: draft 2020-12, or the draft its $schema
// names (draft-04, -06, -07, 2019-09). A schema that does not compile, or
// that a limit refuses, is an *Error with code invalid_argument wrapping
// ErrInvalidSchema.
func (c *Compiler) Compile(src []byte) (*Schema, error) {
	if len(src) > c.limits.MaxSchemaBytes {
		return nil, invalidSchema("%d bytes, over the limit of %d", len(src), c.limits.MaxSchemaBytes)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, src); err != nil {
		return nil, invalidSchema("not JSON: %v", err)
	}
	key := sha256.Sum256(compact.Bytes())
	if s, ok := c.cache.get(key); ok {
		return s, nil
	}
	s, err := c.compile(compact.Bytes())
	if err != nil {
		return nil, err
	}
	c.cache.put(key, s, int64(len(s.source)))
	return s, nil
}

func (c *Compiler) compile(src []byte) (*Schema, error) {
	if d := jsonDepth(src); d > c.limits.MaxSchemaDepth {
		return nil, invalidSchema("nested %d deep, over the limit of %d", d, c.limits.MaxSchemaDepth)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		return nil, invalidSchema("not JSON: %v", err)
	}
	if at, bad := badNumber(doc, nil); bad {
		return nil, invalidSchema("%s: %s", pointer(at), numberRule)
	}
	switch doc.(type) {
	case bool, map[string]any:
	default:
		return nil, invalidSchema("a schema is an object or a boolean")
	}
	draft := draft2020
	if m, ok := doc.(map[string]any); ok {
		if v, ok := m["$schema"]; ok {
			u, _ := v.(string)
			if draft, ok = draftOf(u); !ok {
				return nil, invalidSchema("$schema %s: not one of draft-04, draft-06, draft-07, 2019-09 or 2020-12 (%s)", truncate(fmt.Sprint(v), 100), Draft202012)
			}
		}
	}
	if err := checkRefs(doc, ""); err != nil {
		return nil, err
	}
	jc := newCompiler()
	if err := jc.AddResource(resourceURL, doc); err != nil {
		return nil, invalidSchema("%v", err)
	}
	sch, err := jc.Compile(resourceURL)
	if err != nil {
		return nil, invalidSchema("%s", truncate(compileMessage(err, draft), c.limits.MaxMessageBytes))
	}
	a, err := checkEvaluations(doc, c.limits.MaxEvaluations)
	if err != nil {
		return nil, err
	}
	s := &Schema{source: src, doc: doc, anchors: a.anchors, patternWork: a.patternWork, evaluations: a.evaluations, sch: sch, limits: c.limits, draft: draft}
	if draft == draft2020 {
		// The fast path reads keywords as 2020-12 does; earlier drafts
		// differ ($ref siblings, items arrays, boolean exclusive bounds).
		s.fast = buildFast(doc, compileFormat)
	}
	return s, nil
}

// newCompiler is the validator's compiler as every schema uses it: draft
// 2020-12 unless $schema names another, no loads, formats asserted,
// bounded patterns.
func newCompiler() *jsonschema.Compiler {
	jc := jsonschema.NewCompiler()
	jc.DefaultDraft(jsonschema.Draft2020)
	jc.UseLoader(noLoader{})
	jc.AssertFormat()
	jc.UseRegexpEngine(boundedRegexp)
	return jc
}

// compileFormat compiles {"format": f}, which the fast path asks about
// one string at a time.
func compileFormat(f string) (*jsonschema.Schema, error) {
	jc := newCompiler()
	if err := jc.AddResource(resourceURL, map[string]any{"format": f}); err != nil {
		return nil, err
	}
	return jc.Compile(resourceURL)
}

// compileMessage is the compiler's message without the made-up resource
// URL, which means nothing to whoever sent the schema.
func compileMessage(err error, draft string) string {
	msg := err.Error()
	var se *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &se) && errors.As(se.Err, &ve) {
		msg = "not a valid " + draft + " schema: " + strings.Join(violations(ve, DefaultMaxProblems, true), "; ")
	}
	msg = strings.ReplaceAll(msg, resourceURL, "")
	return msg
}

// MaxPatternInstructions bounds the program a pattern compiles to. RE2
// matches in time linear in the input, times the program's size: a{1000}
// repeated 100 times (700 bytes) is 100,000 instructions and took 4.5
// minutes on a 100,000-character string.
const MaxPatternInstructions = 1000

// boundedRegexp compiles a pattern with Go's regexp (RE2 syntax and
// semantics), refusing one whose program is over MaxPatternInstructions.
func boundedRegexp(s string) (jsonschema.Regexp, error) {
	if _, err := syntax.Parse(s, syntax.Perl); err != nil {
		return nil, err
	}
	if n := patternSize(s); n > MaxPatternInstructions {
		return nil, fmt.Errorf("pattern compiles to %d instructions, over the limit of %d", n, MaxPatternInstructions)
	}
	return regexp.Compile(s)
}

// noLoader refuses every load: a schema may refer only to itself.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("contract: %s: schemas may not load other documents", url)
}

// checkRefs refuses any $ref or $dynamicRef that is not a fragment of the
// schema itself (no network, no files), and $id below the root, which
// would let a fragment name another document.
//
// Keys are keywords only in a schema: the members of properties,
// patternProperties, $defs, definitions and dependentSchemas are names
// (whose values are schemas), and const, enum, default and examples hold
// data, which is not looked into.
func checkRefs(v any, ptr string) error {
	return checkRefsIn(v, ptr, false)
}

// namedSchemas reports whether keyword k's value maps names to schemas.
func namedSchemas(k string) bool {
	switch k {
	case "properties", "patternProperties", "$defs", "definitions", "dependentSchemas":
		return true
	}
	return false
}

// dataKeyword reports whether keyword k's value is data, not a schema.
func dataKeyword(k string) bool {
	switch k {
	case "const", "enum", "default", "examples":
		return true
	}
	return false
}

func checkRefsIn(v any, ptr string, names bool) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			at := ptr + "/" + escapeToken(k)
			if names {
				if err := checkRefsIn(x, at, false); err != nil {
					return err
				}
				continue
			}
			switch {
			case k == "$ref" || k == "$dynamicRef" || k == "$recursiveRef":
				s, ok := x.(string)
				if ok && !strings.HasPrefix(s, "#") {
					return invalidSchema("%s/%s %q: only references within the schema (starting with #) are allowed", ptr, k, truncate(s, 200))
				}
			case k == "$id":
				if ptr != "" {
					return invalidSchema("%s/$id: $id is allowed only at the root", ptr)
				}
			case dataKeyword(k):
				continue
			}
			if err := checkRefsIn(x, at, namedSchemas(k)); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range v {
			if err := checkRefsIn(x, fmt.Sprintf("%s/%d", ptr, i), false); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonDepth is the deepest nesting of objects and arrays in valid JSON src.
func jsonDepth(src []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, b := range src {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
			deepest = max(deepest, depth)
		case b == '}' || b == ']':
			depth--
		}
	}
	return deepest
}

func escapeToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
