package contract

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The fast path. Most contracts are plain object schemas: types,
// properties, required, closed objects, arrays, bounds, enums of strings,
// patterns and formats, with local $refs (what SchemaFor writes). For
// those, Validate first walks the value's bytes once, without decoding
// it, and returns nil when every rule holds; anything it cannot decide
// exactly (a number on a bound it cannot compare exactly, an escaped
// string, a value near a limit, bad JSON) sends the value to the full
// validator, which also writes every refusal's message. So the fast path
// only ever says "valid" when the full validator would, and a schema with
// any keyword outside it has no fast path at all.

// Type bits of fastNode.types.
const (
	tNull = 1 << iota
	tBool
	tObject
	tArray
	tNumber
	tInteger
	tString
)

var typeBits = map[string]uint8{"null": tNull, "boolean": tBool, "object": tObject, "array": tArray, "number": tNumber, "integer": tInteger, "string": tString}

// fastNode is a subschema the fast path can decide.
type fastNode struct {
	never              bool  // the false schema
	types              uint8 // 0: any type
	props              map[string]*fastNode
	required           map[string]uint // property -> bit
	nreq               int
	closed             bool // additionalProperties: false
	items              *fastNode
	minItems, maxItems int      // -1: none
	minLen, maxLen     int      // -1: none
	enum               []string // allowed strings, with enumBool/enumNull
	hasEnum            bool
	enumTrue           bool
	enumFalse          bool
	enumNull           bool
	bounds             []fastBound
	pattern            *regexp.Regexp
	format             *jsonschema.Schema // {"format": f}, asserted
	ref                *fastNode          // $ref target, resolved after building
	refName            string
}

// anyNode accepts any value (properties and items without a schema).
var anyNode = &fastNode{minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}

// fastBound is a numeric bound exactly representable as a float64.
type fastBound struct {
	v         float64
	upper     bool // maximum-like
	exclusive bool
}

// buildFast returns the fast path of doc, or nil when it has none.
func buildFast(doc any, compileFormat func(string) (*jsonschema.Schema, error)) *fastNode {
	b := fastBuilder{defs: map[string]*fastNode{}, format: compileFormat}
	root, _ := doc.(map[string]any)
	if d, ok := root["$defs"]; ok {
		defs, ok := d.(map[string]any)
		if !ok {
			return nil
		}
		for name := range defs {
			b.defs[name] = &fastNode{}
		}
		for name, s := range defs {
			if !b.fill(b.defs[name], s) {
				return nil
			}
		}
	}
	n := &fastNode{}
	if !b.fill(n, doc) {
		return nil
	}
	return n
}

type fastBuilder struct {
	defs   map[string]*fastNode
	format func(string) (*jsonschema.Schema, error)
}

func (b *fastBuilder) node(s any) *fastNode {
	n := &fastNode{}
	if !b.fill(n, s) {
		return nil
	}
	return n
}

// fill compiles schema s into n; false when s is outside the fast path.
func (b *fastBuilder) fill(n *fastNode, s any) bool {
	n.minItems, n.maxItems, n.minLen, n.maxLen = -1, -1, -1, -1
	switch s := s.(type) {
	case bool:
		n.never = !s
		return true
	case map[string]any:
		if ref, ok := s["$ref"]; ok {
			// Only a $ref alone, with annotations.
			for k := range s {
				if k != "$ref" && !annotations[k] {
					return false
				}
			}
			name, ok := ref.(string)
			if !ok || !strings.HasPrefix(name, "#/$defs/") || strings.ContainsAny(name[8:], "/~%") {
				return false
			}
			n.ref, n.refName = b.defs[name[8:]], name
			return n.ref != nil
		}
		for k, v := range s {
			if !b.keyword(n, k, v) {
				return false
			}
		}
		return true
	}
	return false
}

func (b *fastBuilder) keyword(n *fastNode, k string, v any) bool {
	switch k {
	case "type":
		switch v := v.(type) {
		case string:
			n.types = typeBits[v]
			return n.types != 0
		case []any:
			for _, t := range v {
				name, _ := t.(string)
				if typeBits[name] == 0 {
					return false
				}
				n.types |= typeBits[name]
			}
			return n.types != 0
		}
		return false
	case "properties":
		props, ok := v.(map[string]any)
		if !ok {
			return false
		}
		n.props = make(map[string]*fastNode, len(props))
		for name, s := range props {
			if n.props[name] = b.node(s); n.props[name] == nil {
				return false
			}
		}
		return true
	case "required":
		req, ok := v.([]any)
		if !ok || len(req) > 64 {
			return false
		}
		n.required = make(map[string]uint, len(req))
		for _, r := range req {
			name, ok := r.(string)
			if !ok {
				return false
			}
			if _, dup := n.required[name]; !dup {
				n.required[name] = uint(len(n.required))
			}
		}
		n.nreq = len(n.required)
		return true
	case "additionalProperties":
		open, ok := v.(bool)
		n.closed = !open
		return ok
	case "items":
		n.items = b.node(v)
		return n.items != nil
	case "minItems", "maxItems", "minLength", "maxLength":
		c, ok := count(v)
		if !ok {
			return false
		}
		switch k {
		case "minItems":
			n.minItems = c
		case "maxItems":
			n.maxItems = c
		case "minLength":
			n.minLen = c
		default:
			n.maxLen = c
		}
		return true
	case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
		f, ok := exactFloat(v)
		if !ok {
			return false
		}
		n.bounds = append(n.bounds, fastBound{v: f, upper: strings.Contains(k, "aximum"), exclusive: strings.HasPrefix(k, "exclusive")})
		return true
	case "enum", "const":
		list := []any{v}
		if k == "enum" {
			l, ok := v.([]any)
			if !ok {
				return false
			}
			list = l
		}
		if n.hasEnum { // enum and const together
			return false
		}
		n.hasEnum = true
		for _, e := range list {
			switch e := e.(type) {
			case string:
				n.enum = append(n.enum, e)
			case bool:
				n.enumTrue, n.enumFalse = n.enumTrue || e, n.enumFalse || !e
			case nil:
				n.enumNull = true
			default:
				return false
			}
		}
		return true
	case "pattern":
		p, ok := v.(string)
		if !ok {
			return false
		}
		re, err := boundedRegexp(p)
		if err != nil {
			return false
		}
		n.pattern = re.(*regexp.Regexp)
		return true
	case "format":
		f, ok := v.(string)
		if !ok {
			return false
		}
		s, err := b.format(f)
		n.format = s
		return err == nil
	}
	return annotations[k]
}

// count reads a non-negative integer keyword.
func count(v any) (int, bool) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	c, err := strconv.Atoi(string(num))
	return c, err == nil && c >= 0
}

// exactFloat reads a bound that a float64 holds exactly.
func exactFloat(v any) (float64, bool) {
	num, ok := v.(json.Number)
	if !ok || !numberInRange(string(num)) {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(string(num))
	if !ok {
		return 0, false
	}
	f, exact := r.Float64()
	return f, exact && !math.IsInf(f, 0)
}

// fastCheck walks one JSON value's bytes against a schema's fast path.
type fastCheck struct {
	b         []byte
	i         int
	nodes     int64
	depth     int
	maxDepth  int
	maxNodes  int64
	undecided bool // something the fast path cannot decide
}

// valid reports whether value certainly satisfies n: false means "ask the
// full validator", not "invalid".
func (s *Schema) fastValid(value []byte) bool {
	if s.fast == nil || (s.patternWork > 0 && int64(len(value))*s.patternWork > s.limits.MaxPatternWork) {
		return false
	}
	c := fastCheck{b: value, maxDepth: s.limits.MaxValueDepth, maxNodes: s.limits.MaxValidationWork / max(1, s.evaluations)}
	c.space()
	ok := c.value(s.fast)
	c.space()
	return ok && !c.undecided && c.i == len(c.b)
}

func (c *fastCheck) space() {
	for c.i < len(c.b) && (c.b[c.i] == ' ' || c.b[c.i] == '\t' || c.b[c.i] == '\n' || c.b[c.i] == '\r') {
		c.i++
	}
}

// value checks the value at c.i against n and moves past it.
func (c *fastCheck) value(n *fastNode) bool {
	for hops := 0; n != nil && n.ref != nil; hops++ {
		if hops == 64 { // Compile refuses $ref cycles; this is a backstop
			return false
		}
		n = n.ref
	}
	if n == nil || n.never || c.i >= len(c.b) {
		return false
	}
	c.nodes++
	if c.nodes > c.maxNodes {
		return false
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		return c.object(n)
	case ch == '[':
		return c.array(n)
	case ch == '"':
		s, ok := c.str()
		return ok && c.checkString(n, s)
	case ch == 't' || ch == 'f' || ch == 'n':
		return c.literal(n)
	default:
		return c.number(n)
	}
}

func (c *fastCheck) allows(n *fastNode, t uint8) bool { return n.types == 0 || n.types&t != 0 }

func (c *fastCheck) object(n *fastNode) bool {
	if !c.allows(n, tObject) || n.hasEnum || n.pattern != nil || n.format != nil || len(n.bounds) > 0 {
		return false
	}
	if c.depth++; c.depth > c.maxDepth {
		return false
	}
	c.i++
	var seen uint64
	c.space()
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
	} else {
		for {
			c.space()
			if c.i >= len(c.b) || c.b[c.i] != '"' {
				return false
			}
			key, ok := c.str()
			if !ok {
				return false
			}
			c.space()
			if c.i >= len(c.b) || c.b[c.i] != ':' {
				return false
			}
			c.i++
			c.space()
			c.nodes++
			sub, known := n.props[string(key)]
			switch {
			case known:
			case n.closed:
				return false
			default:
				sub = anyNode
			}
			if bit, ok := n.required[string(key)]; ok {
				seen |= 1 << bit
			}
			if !c.value(sub) {
				return false
			}
			c.space()
			if c.i < len(c.b) && c.b[c.i] == ',' {
				c.i++
				continue
			}
			if c.i < len(c.b) && c.b[c.i] == '}' {
				c.i++
				break
			}
			return false
		}
	}
	c.depth--
	return seen == (uint64(1)<<n.nreq)-1 // all required seen (64: every bit)
}

func (c *fastCheck) array(n *fastNode) bool {
	if !c.allows(n, tArray) || n.hasEnum || n.pattern != nil || n.format != nil || len(n.bounds) > 0 {
		return false
	}
	if c.depth++; c.depth > c.maxDepth {
		return false
	}
	c.i++
	items := n.items
	if items == nil {
		items = anyNode
	}
	count := 0
	c.space()
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
	} else {
		for {
			c.space()
			if !c.value(items) {
				return false
			}
			count++
			c.space()
			if c.i < len(c.b) && c.b[c.i] == ',' {
				c.i++
				continue
			}
			if c.i < len(c.b) && c.b[c.i] == ']' {
				c.i++
				break
			}
			return false
		}
	}
	c.depth--
	return (n.minItems < 0 || count >= n.minItems) && (n.maxItems < 0 || count <= n.maxItems)
}

// str reads a string at c.i, without copying it unless it is escaped;
// strings that are not valid UTF-8 or hold control characters are left
// undecided.
func (c *fastCheck) str() ([]byte, bool) {
	start := c.i
	c.i++
	escaped := false
	for c.i < len(c.b) {
		switch ch := c.b[c.i]; {
		case ch == '"':
			c.i++
			if !escaped {
				raw := c.b[start+1 : c.i-1]
				return raw, utf8.Valid(raw)
			}
			var s string
			if json.Unmarshal(c.b[start:c.i], &s) != nil || !utf8.ValidString(s) {
				return nil, false
			}
			return []byte(s), true
		case ch == '\\':
			escaped = true
			c.i += 2
		case ch < 0x20:
			return nil, false
		default:
			c.i++
		}
	}
	return nil, false
}

func (c *fastCheck) checkString(n *fastNode, s []byte) bool {
	if !c.allows(n, tString) {
		return false
	}
	if n.minLen >= 0 || n.maxLen >= 0 {
		l := utf8.RuneCount(s)
		if (n.minLen >= 0 && l < n.minLen) || (n.maxLen >= 0 && l > n.maxLen) {
			return false
		}
	}
	if n.hasEnum && !containsString(n.enum, s) {
		return false
	}
	if n.pattern != nil && !n.pattern.Match(s) {
		return false
	}
	return n.format == nil || n.format.Validate(string(s)) == nil
}

func containsString(list []string, s []byte) bool {
	for _, e := range list {
		if e == string(s) {
			return true
		}
	}
	return false
}

func (c *fastCheck) literal(n *fastNode) bool {
	rest := c.b[c.i:]
	var t uint8
	var ok bool
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		t, ok, c.i = tBool, !n.hasEnum || n.enumTrue, c.i+4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		t, ok, c.i = tBool, !n.hasEnum || n.enumFalse, c.i+5
	case len(rest) >= 4 && string(rest[:4]) == "null":
		t, ok, c.i = tNull, !n.hasEnum || n.enumNull, c.i+4
	default:
		return false
	}
	// Keywords of other types do not apply; a format or pattern on a
	// non-string is left to the full validator.
	return ok && c.allows(n, t) && n.format == nil
}

// number checks a number. An integer literal of up to 15 digits is exact
// as a float64; other numbers are compared by their nearest float64, which
// is exact except when it equals the bound.
func (c *fastCheck) number(n *fastNode) bool {
	start := c.i
	integer := true
	for c.i < len(c.b) {
		ch := c.b[c.i]
		if ch == '.' || ch == 'e' || ch == 'E' {
			integer = false
		} else if !(ch == '-' || ch == '+' || ch >= '0' && ch <= '9') {
			break
		}
		c.i++
	}
	text := c.b[start:c.i]
	if len(text) == 0 || !numberInRange(string(text)) || n.hasEnum || n.format != nil || !json.Valid(text) {
		return false
	}
	switch {
	case n.types == 0 || n.types&tNumber != 0:
	case n.types&tInteger != 0 && integer:
	default:
		return false // 1.0 is an integer: the full validator decides
	}
	if len(n.bounds) == 0 {
		return true
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return false
	}
	exact := integer && len(bytes.TrimLeft(text, "-")) <= 15
	for _, b := range n.bounds {
		if f == b.v && !exact {
			return false
		}
		switch {
		case b.upper && b.exclusive && !(f < b.v),
			b.upper && !b.exclusive && !(f <= b.v),
			!b.upper && b.exclusive && !(f > b.v),
			!b.upper && !b.exclusive && !(f >= b.v):
			return false
		}
	}
	return true
}
