package contract

import (
	"fmt"
	"net/url"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
)

// maxAnalysisStates bounds the work of checkEvaluations itself: a schema
// whose evaluation it cannot bound within this many steps is refused.
const maxAnalysisStates = 10000

// checkEvaluations refuses a schema whose subschemas would be evaluated
// more than budget times at one place of some value. It follows the
// schema as the validator does: the in-place applicators (allOf, anyOf,
// oneOf, not, if/then/else, dependentSchemas, $ref, $dynamicRef) evaluate
// at the same place, every path counting once; the others move to a
// property or an item. It walks every place a value can reach, merging
// places that evaluate the same subschemas, so recursion that multiplies
// the work at each level (a property whose schema is allOf of two $refs
// back to its parent) is refused, and recursion that does not (a tree) is
// allowed.
//
// It returns the schema's anchors, by name, as JSON pointers, and the most
// pattern instructions that can apply to one string at one place.
func checkEvaluations(doc any, budget int) (analysis, error) {
	g := newGraph(doc)
	if err := g.build(); err != nil {
		return analysis{}, err
	}
	a := analysis{anchors: map[string]string{}}
	for name, ids := range g.anchors {
		if len(ids) == 1 {
			a.anchors[name] = g.ptrs[ids[0]]
		}
	}
	start, err := g.closure(map[int]int64{0: 1}, int64(budget))
	if err != nil {
		return analysis{}, err
	}
	a.patternWork = max(a.patternWork, g.patternWork(start))
	_, total := support(start)
	a.evaluations = total + g.compareWork(start)
	seen := map[string]int64{}
	queue := []map[int]int64{start}
	for steps := 0; len(queue) > 0; steps++ {
		if steps > maxAnalysisStates {
			return analysis{}, invalidSchema("too complex to bound its evaluation (over %d distinct places)", maxAnalysisStates)
		}
		v := queue[0]
		queue = queue[1:]
		for _, label := range g.labels(v) {
			next := map[int]int64{}
			for n, c := range v {
				for _, e := range g.kids[n] {
					if e.label == label || (e.label == "p*" && strings.HasPrefix(label, "p")) {
						next[e.to] += c
					}
				}
			}
			if len(next) == 0 {
				continue
			}
			next, err := g.closure(next, int64(budget))
			if err != nil {
				return analysis{}, err
			}
			a.patternWork = max(a.patternWork, g.patternWork(next))
			key, total := support(next)
			a.evaluations = max(a.evaluations, total+g.compareWork(next))
			if seen[key] >= total {
				continue
			}
			seen[key] = total
			queue = append(queue, next)
		}
	}
	return a, nil
}

// analysis is what checkEvaluations learns of a schema.
type analysis struct {
	anchors     map[string]string
	patternWork int64
	// evaluations is the most subschemas evaluated at one place, plus
	// the enum values they compare a value with there.
	evaluations int64
}

// compareWork is how many enum values the subschemas evaluated at one
// place compare a value there with, one by one.
func (g *graph) compareWork(v map[int]int64) int64 {
	var w int64
	for n, c := range v {
		w += c * int64(g.compares[n])
	}
	return w
}

// patternWork is how many pattern instructions the subschemas evaluated
// at one place can apply to one string there (the value, or a property
// name matched against patternProperties).
func (g *graph) patternWork(v map[int]int64) int64 {
	var w int64
	for n, c := range v {
		w += c * int64(g.patterns[n])
	}
	return w
}

// patternSize is the size of the program a pattern compiles to, 0 when it
// does not compile (the compiler has refused it already).
func patternSize(p string) int {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return 0
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0
	}
	return len(prog.Inst)
}

// support keys a set of evaluations by the subschemas in it.
func support(v map[int]int64) (string, int64) {
	ids := make([]int, 0, len(v))
	var total int64
	for n, c := range v {
		ids = append(ids, n)
		total += c
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.Itoa(id))
		b.WriteByte(',')
	}
	return b.String(), total
}

// graph is a schema's subschemas, with the edges the validator follows.
type graph struct {
	doc        any
	ptrs       []string
	byPtr      map[string]int
	anchors    map[string][]int
	dynAnchors map[string][]int
	refs       map[int][]string // node -> its $ref / $dynamicRef values
	dynRefs    map[int]bool
	eps        [][]int     // in-place edges
	patterns   []int       // instructions of a node's pattern and patternProperties
	compares   []int       // values of a node's enum
	kids       [][]kidEdge // edges to a property ("p:name", "p*" for any) or an item ("i")
	pending    []int       // nodes whose refs are not resolved yet
}

type kidEdge struct {
	label string
	to    int
}

func newGraph(doc any) *graph {
	return &graph{doc: doc, byPtr: map[string]int{}, anchors: map[string][]int{}, dynAnchors: map[string][]int{}, refs: map[int][]string{}, dynRefs: map[int]bool{}}
}

func (g *graph) build() error {
	g.node(g.doc, "")
	for len(g.pending) > 0 {
		n := g.pending[0]
		g.pending = g.pending[1:]
		for _, ref := range g.refs[n] {
			targets, err := g.resolve(ref, g.dynRefs[n])
			if err != nil {
				return invalidSchema("%s: %v", g.ptrs[n], err)
			}
			g.eps[n] = append(g.eps[n], targets...)
		}
	}
	return nil
}

// patternsOf is the size of the patterns of the subschema m: its pattern
// and the names of its patternProperties.
func patternsOf(m map[string]any) int {
	n := 0
	if p, ok := m["pattern"].(string); ok {
		n += patternSize(p)
	}
	if pp, ok := m["patternProperties"].(map[string]any); ok {
		for p := range pp {
			n += patternSize(p)
		}
	}
	return n
}

// node registers the subschema v at ptr and everything below it, and
// returns its id.
func (g *graph) node(v any, ptr string) int {
	if id, ok := g.byPtr[ptr]; ok {
		return id
	}
	id := len(g.ptrs)
	g.ptrs = append(g.ptrs, ptr)
	g.byPtr[ptr] = id
	g.eps = append(g.eps, nil)
	g.kids = append(g.kids, nil)
	g.patterns = append(g.patterns, 0)
	g.compares = append(g.compares, 0)
	m, ok := v.(map[string]any)
	if !ok {
		return id
	}
	g.patterns[id] += patternsOf(m)
	if e, ok := m["enum"].([]any); ok {
		g.compares[id] = len(e)
	}
	one := func(k string) (int, bool) {
		x, ok := m[k]
		if !ok {
			return 0, false
		}
		return g.node(x, ptr+"/"+escapeToken(k)), true
	}
	list := func(k string) []int {
		xs, _ := m[k].([]any)
		var ids []int
		for i, x := range xs {
			ids = append(ids, g.node(x, ptr+"/"+k+"/"+strconv.Itoa(i)))
		}
		return ids
	}
	named := func(k string) map[string]int {
		xs, _ := m[k].(map[string]any)
		ids := map[string]int{}
		for name, x := range xs {
			ids[name] = g.node(x, ptr+"/"+escapeToken(k)+"/"+escapeToken(name))
		}
		return ids
	}
	for _, k := range []string{"not", "if", "then", "else"} {
		if t, ok := one(k); ok {
			g.eps[id] = append(g.eps[id], t)
		}
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		g.eps[id] = append(g.eps[id], list(k)...)
	}
	// dependencies is draft-07's and earlier dependentSchemas (its arrays
	// of names are leaves).
	for _, k := range []string{"dependentSchemas", "dependencies"} {
		g.eps[id] = append(g.eps[id], sortedValues(named(k))...)
	}
	props := named("properties")
	for _, name := range sortedKeys(props) {
		g.kids[id] = append(g.kids[id], kidEdge{"p:" + name, props[name]})
	}
	for _, t := range sortedValues(named("patternProperties")) {
		g.kids[id] = append(g.kids[id], kidEdge{"p*", t})
	}
	for _, k := range []string{"additionalProperties", "unevaluatedProperties", "propertyNames"} {
		if t, ok := one(k); ok {
			g.kids[id] = append(g.kids[id], kidEdge{"p*", t})
		}
	}
	// items is an array of schemas (a tuple) before 2020-12, which has
	// prefixItems for it; additionalItems then follows the tuple.
	tuple := "prefixItems"
	if _, ok := m["items"].([]any); ok {
		tuple = "items"
	}
	for _, t := range list(tuple) {
		g.kids[id] = append(g.kids[id], kidEdge{"i", t})
	}
	for _, k := range []string{"items", "additionalItems", "contains", "unevaluatedItems"} {
		if _, ok := m[k].([]any); ok {
			continue
		}
		if t, ok := one(k); ok {
			g.kids[id] = append(g.kids[id], kidEdge{"i", t})
		}
	}
	named("$defs")
	named("definitions")
	one("contentSchema")
	if a, ok := m["$anchor"].(string); ok {
		g.anchors[a] = append(g.anchors[a], id)
	}
	if a, ok := m["$dynamicAnchor"].(string); ok {
		g.dynAnchors[a] = append(g.dynAnchors[a], id)
	}
	// $recursiveRef (2019-09) can only be "#": with $id allowed at the
	// root alone, it lands on the root, as $ref "#" does.
	for _, k := range []string{"$ref", "$dynamicRef", "$recursiveRef"} {
		if r, ok := m[k].(string); ok {
			g.refs[id] = append(g.refs[id], r)
			g.dynRefs[id] = g.dynRefs[id] || k == "$dynamicRef"
		}
	}
	if len(g.refs[id]) > 0 {
		g.pending = append(g.pending, id)
	}
	return id
}

// resolve finds the subschemas a $ref (or, dynamic, a $dynamicRef, which
// may land on any $dynamicAnchor of its name) points to.
func (g *graph) resolve(ref string, dynamic bool) ([]int, error) {
	frag, err := url.PathUnescape(strings.TrimPrefix(ref, "#"))
	if err != nil {
		return nil, fmt.Errorf("$ref %q: %v", truncate(ref, 100), err)
	}
	if frag == "" || strings.HasPrefix(frag, "/") {
		v, ok := lookup(g.doc, frag)
		if !ok {
			return nil, fmt.Errorf("$ref %q: no such place in the schema", truncate(ref, 100))
		}
		return []int{g.node(v, frag)}, nil
	}
	targets := slices.Clone(g.anchors[frag])
	if dynamic {
		targets = append(targets, g.dynAnchors[frag]...)
	} else if len(targets) == 0 {
		targets = g.dynAnchors[frag]
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("$ref %q: no such anchor in the schema", truncate(ref, 100))
	}
	return targets, nil
}

// lookup follows a JSON pointer into doc.
func lookup(doc any, ptr string) (any, bool) {
	if ptr == "" {
		return doc, true
	}
	v := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// closure adds to v every subschema evaluated in place from it, each path
// counting once, and fails past budget or on an in-place cycle (a $ref
// back to itself with no property or item between, which the validator
// would only stop at run time).
func (g *graph) closure(v map[int]int64, budget int64) (map[int]int64, error) {
	out := map[int]int64{}
	var total int64
	onPath := map[int]bool{}
	var visit func(n int, c int64) error
	visit = func(n int, c int64) error {
		if onPath[n] {
			return invalidSchema("%s: $ref cycle with no property or item between", ptrOrRoot(g.ptrs[n]))
		}
		out[n] += c
		total += c
		if total > budget {
			return invalidSchema("%s: over %d subschema evaluations at one place of a value (through $ref and allOf/anyOf/oneOf/not/if)", ptrOrRoot(g.ptrs[n]), budget)
		}
		onPath[n] = true
		defer delete(onPath, n)
		for _, t := range g.eps[n] {
			if err := visit(t, c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range sortedKeys(v) {
		if err := visit(n, v[n]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// labels lists the steps a value can take from places evaluating v: each
// property named by a properties keyword, any other property, an item.
func (g *graph) labels(v map[int]int64) []string {
	set := map[string]bool{"p*": true, "i": true}
	for n := range v {
		for _, e := range g.kids[n] {
			set[e.label] = true
		}
	}
	return sortedKeys(set)
}

func ptrOrRoot(p string) string {
	if p == "" {
		return root
	}
	return p
}

func sortedKeys[K interface{ ~int | ~string }, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sortedValues(m map[string]int) []int {
	var vs []int
	for _, k := range sortedKeys(m) {
		vs = append(vs, m[k])
	}
	return vs
}
