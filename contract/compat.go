package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// Compatible lists how new breaks mode against old, as "pointer: change"
// with the change read from old to new ("/title: type string -> number"),
// at most limit of them; none means compatible. Pointers are into values,
// "*" standing for any item or any other property.
//
// The check is structural over a subset of JSON Schema: type, enum,
// const, properties, required, additionalProperties, items, the numeric,
// string, array and object bounds, pattern, format, multipleOf, and local
// $ref. Whatever is outside it (anyOf, patternProperties, if/then/else,
// ...) passes only where old and new are identical there; any other
// change to it is reported as incompatible, saying so: the check fails
// closed.
//
// Schemas in a draft other than 2020-12, where keywords read differently
// ($ref beside other keywords, items as an array), are compared whole:
// they are compatible only if they are the same.
func Compatible(old, new *Schema, mode Mode, limit int) []string {
	if (mode.backward() || mode.forward()) && (old.draft != draft2020 || new.draft != draft2020) {
		if bytes.Equal(old.source, new.source) {
			return nil
		}
		return []string{fmt.Sprintf("(root): schema in %s -> %s: only draft 2020-12 schemas are compared part by part; a schema in another draft must stay the same (or change under NONE)", old.draft, new.draft)}
	}
	var out []string
	if mode.backward() {
		c := newChecker(old, new, true, limit)
		c.sub(old.doc, "", new.doc, "", "")
		out = append(out, c.problems...)
	}
	if mode.forward() && len(out) < limit {
		c := newChecker(new, old, false, limit-len(out))
		c.sub(new.doc, "", old.doc, "", "")
		for _, p := range c.problems {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// maxCheckSteps bounds the pairs of subschemas one check compares; a
// check that needs more is reported as incompatible.
const maxCheckSteps = 100000

// checker decides whether everything the writer schema w accepts, the
// reader schema r accepts too. wIsOld says which of them is the old one,
// for messages.
type checker struct {
	w, r     *Schema
	wIsOld   bool
	seen     map[[2]string]bool
	problems []string
	limit    int
}

func newChecker(w, r *Schema, wIsOld bool, limit int) *checker {
	return &checker{w: w, r: r, wIsOld: wIsOld, seen: map[[2]string]bool{}, limit: limit}
}

// report adds "at: what old -> new", given the writer's and reader's sides.
func (c *checker) report(at, what, wSide, rSide string) {
	oldS, newS := wSide, rSide
	if !c.wIsOld {
		oldS, newS = rSide, wSide
	}
	msg := ptrOrRoot(at) + ": " + what + " " + oldS + " -> " + newS
	if what == "" {
		msg = ptrOrRoot(at) + ": " + oldS + " -> " + newS
	}
	if len(c.problems) < c.limit && !slices.Contains(c.problems, msg) {
		c.problems = append(c.problems, msg)
	}
}

func (c *checker) note(at, msg string) {
	msg = ptrOrRoot(at) + ": " + msg
	if len(c.problems) < c.limit && !slices.Contains(c.problems, msg) {
		c.problems = append(c.problems, msg)
	}
}

// The keywords that constrain nothing.
var annotations = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "$anchor": true, "$dynamicAnchor": true, "$defs": true,
	"definitions": true, "$vocabulary": true, "title": true, "description": true, "default": true,
	"examples": true, "deprecated": true, "readOnly": true, "writeOnly": true, "contentEncoding": true,
	"contentMediaType": true, "contentSchema": true,
}

// The keywords the checker compares.
var checked = map[string]bool{
	"type": true, "enum": true, "const": true, "properties": true, "required": true,
	"additionalProperties": true, "items": true, "minimum": true, "maximum": true,
	"exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true, "minLength": true,
	"maxLength": true, "pattern": true, "format": true, "minItems": true, "maxItems": true,
	"uniqueItems": true, "minProperties": true, "maxProperties": true, "$ref": true,
}

// Keywords outside the subset that only add a condition of their own: a
// writer may gain one freely; a reader's must be the writer's, unchanged.
// Any other keyword the validator knows changes the meaning of others
// (patternProperties, prefixItems, contains, unevaluated*, $dynamicRef)
// and must be identical on both sides.
var conjuncts = map[string]bool{
	"allOf": true, "anyOf": true, "oneOf": true, "not": true, "if": true, "then": true, "else": true,
	"dependentRequired": true, "dependentSchemas": true, "propertyNames": true,
}

var entangled = map[string]bool{
	"patternProperties": true, "prefixItems": true, "contains": true, "minContains": true,
	"maxContains": true, "unevaluatedProperties": true, "unevaluatedItems": true, "$dynamicRef": true,
}

// sub checks w (at wPtr in the writer's document) against r (at rPtr in
// the reader's), at the value pointer at.
func (c *checker) sub(w any, wPtr string, r any, rPtr string, at string) {
	if len(c.problems) >= c.limit {
		return
	}
	var ok bool
	if w, wPtr, ok = c.deref(c.w, w, wPtr, at); !ok {
		return
	}
	if r, rPtr, ok = c.deref(c.r, r, rPtr, at); !ok {
		return
	}
	key := [2]string{wPtr, rPtr}
	if c.seen[key] {
		return // assumed to hold while it is being checked (recursion)
	}
	c.seen[key] = true
	if len(c.seen) > maxCheckSteps {
		c.note(at, "too complex to check (treated as incompatible)")
		c.limit = len(c.problems)
		return
	}
	wm, rm := asMap(w), asMap(r)
	switch {
	case w == false:
		return
	case r == false:
		c.report(at, "", describeSchema(w), "false (nothing allowed)")
		return
	}
	if c.equal(w, r, map[[2]string]bool{}) {
		return
	}
	if !c.outsideSubset(wm, rm, at) {
		return
	}
	wTypes := c.types(wm, rm, at)
	if wTypes == nil {
		return
	}
	if len(c.enum(wm, rm, at)) > 0 {
		return
	}
	if wTypes["number"] || wTypes["integer"] {
		c.bound(wm, rm, at, "minimum", "exclusiveMinimum", 1)
		c.bound(wm, rm, at, "maximum", "exclusiveMaximum", -1)
		c.multipleOf(wm, rm, at)
	}
	if wTypes["string"] {
		c.count(wm, rm, at, "minLength", 1)
		c.count(wm, rm, at, "maxLength", -1)
		c.same(wm, rm, at, "pattern")
		c.same(wm, rm, at, "format")
	}
	if wTypes["array"] {
		c.count(wm, rm, at, "minItems", 1)
		c.count(wm, rm, at, "maxItems", -1)
		if rm["uniqueItems"] == true && wm["uniqueItems"] != true {
			c.report(at, "uniqueItems", fmt.Sprint(wm["uniqueItems"] == true), "true")
		}
		if _, ok := rm["items"]; ok {
			c.sub(orTrue(wm, "items"), wPtr+"/items", orTrue(rm, "items"), rPtr+"/items", at+"/*")
		}
	}
	if wTypes["object"] {
		c.object(wm, wPtr, rm, rPtr, at)
	}
}

// deref follows $ref from s until a schema without one. A $ref beside
// constraining keywords, or one that cannot be followed, is reported.
func (c *checker) deref(sch *Schema, s any, ptr, at string) (any, string, bool) {
	for range 64 {
		m, ok := s.(map[string]any)
		if !ok {
			return s, ptr, true
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return s, ptr, true
		}
		for k := range m {
			if k != "$ref" && !annotations[k] {
				c.note(at, fmt.Sprintf("$ref beside %s is outside the checked subset (treated as incompatible)", k))
				return nil, "", false
			}
		}
		target, tptr, ok := sch.resolveRef(ref)
		if !ok {
			c.note(at, fmt.Sprintf("$ref %q cannot be followed (treated as incompatible)", truncate(ref, 100)))
			return nil, "", false
		}
		s, ptr = target, tptr
	}
	c.note(at, "$ref chain too long (treated as incompatible)")
	return nil, "", false
}

// outsideSubset reports changes to keywords the checker does not compare
// and says whether the rest of the check should go on.
func (c *checker) outsideSubset(wm, rm map[string]any, at string) bool {
	var changed []string
	for _, k := range sortedKeys(union(wm, rm)) {
		if annotations[k] || checked[k] {
			continue
		}
		wv, inW := wm[k]
		rv, inR := rm[k]
		same := inW && inR && c.equal(wv, rv, map[[2]string]bool{})
		switch {
		case same:
		case conjuncts[k] && !inR:
		case conjuncts[k] || entangled[k]:
			changed = append(changed, k)
		}
	}
	for _, k := range changed {
		c.note(at, k+" changed, which is outside the checked subset (treated as incompatible)")
	}
	return len(changed) == 0
}

// types checks that every type the writer allows the reader allows, and
// returns the writer's types (nil when the check failed).
func (c *checker) types(wm, rm map[string]any, at string) map[string]bool {
	all := map[string]bool{"null": true, "boolean": true, "object": true, "array": true, "number": true, "integer": true, "string": true}
	wt, rt := typeSet(wm), typeSet(rm)
	if wt == nil {
		wt = all
	}
	if rt == nil {
		return wt
	}
	for t := range wt {
		if !rt[t] && !(t == "integer" && rt["number"]) {
			c.report(at, "type", describeTypes(wm), describeTypes(rm))
			return nil
		}
	}
	return wt
}

// enum checks that the writer's allowed values (enum, const) are allowed
// by the reader's, and returns the problems it found.
func (c *checker) enum(wm, rm map[string]any, at string) []string {
	rv, rHas := values(rm)
	if !rHas {
		return nil
	}
	before := len(c.problems)
	wv, wHas := values(wm)
	if !wHas {
		c.report(at, "enum", "none", describeValues(rv))
		return c.problems[before:]
	}
	for _, v := range wv {
		if !slices.ContainsFunc(rv, func(x any) bool { return jsonEqual(v, x) }) {
			verb := "removed"
			if !c.wIsOld {
				verb = "added"
			}
			c.note(at, fmt.Sprintf("enum value %s %s", truncate(describeValue(v), 100), verb))
		}
	}
	return c.problems[before:]
}

// bound checks a numeric bound: the writer's must be at least as tight as
// the reader's. dir is 1 for lower bounds, -1 for upper ones.
func (c *checker) bound(wm, rm map[string]any, at, incl, excl string, dir int) {
	rb, rDesc := numBound(rm, incl, excl, dir)
	if rb == nil {
		return
	}
	wb, wDesc := numBound(wm, incl, excl, dir)
	if wb == nil || wb.tighter(rb, dir) < 0 {
		c.report(at, "", wDesc, rDesc)
	}
}

type bnd struct {
	v    *big.Rat
	excl bool
}

// tighter compares a and b as bounds in direction dir: positive when a is
// tighter, 0 when equal, negative when looser.
func (a *bnd) tighter(b *bnd, dir int) int {
	if cmp := a.v.Cmp(b.v) * dir; cmp != 0 {
		return cmp
	}
	switch {
	case a.excl == b.excl:
		return 0
	case a.excl:
		return 1
	}
	return -1
}

// numBound is the tightest of a schema's inclusive and exclusive bounds.
func numBound(m map[string]any, incl, excl string, dir int) (*bnd, string) {
	var best *bnd
	desc := incl + " none"
	for _, kw := range []string{incl, excl} {
		r, ok := rat(m[kw])
		if !ok {
			continue
		}
		b := &bnd{v: r, excl: kw == excl}
		if best == nil || b.tighter(best, dir) > 0 {
			best, desc = b, kw+" "+fmt.Sprint(m[kw])
		}
	}
	return best, desc
}

func (c *checker) multipleOf(wm, rm map[string]any, at string) {
	rq, ok := rat(rm["multipleOf"])
	if !ok {
		return
	}
	wq, ok := rat(wm["multipleOf"])
	if ok && wq.Sign() != 0 && new(big.Rat).Quo(wq, rq).IsInt() {
		return
	}
	c.report(at, "multipleOf", describeKw(wm, "multipleOf"), describeKw(rm, "multipleOf"))
}

// count checks a length or size bound (an integer); dir as in bound.
func (c *checker) count(wm, rm map[string]any, at, kw string, dir int) {
	rq, ok := rat(rm[kw])
	if !ok {
		return
	}
	if wq, ok := rat(wm[kw]); ok && wq.Cmp(rq)*dir >= 0 {
		return
	}
	c.report(at, kw, describeKw(wm, kw), describeKw(rm, kw))
}

// same checks a keyword the reader may have only if the writer has it
// with the same value.
func (c *checker) same(wm, rm map[string]any, at, kw string) {
	rv, ok := rm[kw]
	if !ok {
		return
	}
	if wv, ok := wm[kw]; ok && jsonEqual(wv, rv) {
		return
	}
	c.report(at, kw, describeKw(wm, kw), describeKw(rm, kw))
}

// object checks required, the properties and additionalProperties, and the
// property counts.
func (c *checker) object(wm map[string]any, wPtr string, rm map[string]any, rPtr string, at string) {
	c.count(wm, rm, at, "minProperties", 1)
	c.count(wm, rm, at, "maxProperties", -1)
	wReq, rReq := stringSet(wm["required"]), stringSet(rm["required"])
	for _, name := range sortedKeys(rReq) {
		if !wReq[name] {
			verb := "added"
			if !c.wIsOld {
				verb = "removed"
			}
			c.note(at+"/"+escapeToken(name), "required "+verb)
		}
	}
	wProps, _ := wm["properties"].(map[string]any)
	rProps, _ := rm["properties"].(map[string]any)
	wAdd, wHasAdd := wm["additionalProperties"]
	rAdd, rHasAdd := rm["additionalProperties"]
	if !wHasAdd {
		wAdd = true
	}
	if !rHasAdd {
		rAdd = true
	}
	for _, name := range sortedKeys(union(wProps, rProps)) {
		wp, inW := wProps[name]
		rp, inR := rProps[name]
		wChild, wcPtr := wp, wPtr+"/properties/"+escapeToken(name)
		if !inW {
			wChild, wcPtr = wAdd, wPtr+"/additionalProperties"
		}
		rChild, rcPtr := rp, rPtr+"/properties/"+escapeToken(name)
		if !inR {
			rChild, rcPtr = rAdd, rPtr+"/additionalProperties"
		}
		if inW && !inR && rAdd == false && wp != false {
			verb := "removed"
			if !c.wIsOld {
				verb = "added"
			}
			c.note(at+"/"+escapeToken(name), "property "+verb+" with additionalProperties false")
			continue
		}
		c.sub(wChild, wcPtr, rChild, rcPtr, at+"/"+escapeToken(name))
	}
	if rAdd == false && wAdd != false {
		c.report(at+"/*", "additionalProperties", describeSchema(wAdd), "false")
		return
	}
	c.sub(wAdd, wPtr+"/additionalProperties", rAdd, rPtr+"/additionalProperties", at+"/*")
}

// resolveRef finds a local $ref's target: a JSON pointer or an anchor.
func (s *Schema) resolveRef(ref string) (any, string, bool) {
	frag, err := url.PathUnescape(strings.TrimPrefix(ref, "#"))
	if err != nil {
		return nil, "", false
	}
	ptr := frag
	if frag != "" && !strings.HasPrefix(frag, "/") {
		var ok bool
		if ptr, ok = s.anchors[frag]; !ok {
			return nil, "", false
		}
	}
	v, ok := lookup(s.doc, ptr)
	return v, ptr, ok
}

func asMap(s any) map[string]any {
	m, _ := s.(map[string]any)
	return m
}

func orTrue(m map[string]any, k string) any {
	if v, ok := m[k]; ok {
		return v
	}
	return true
}

func union[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func typeSet(m map[string]any) map[string]bool {
	switch t := m["type"].(type) {
	case string:
		return map[string]bool{t: true}
	case []any:
		set := map[string]bool{}
		for _, x := range t {
			if s, ok := x.(string); ok {
				set[s] = true
			}
		}
		return set
	}
	return nil
}

func describeTypes(m map[string]any) string {
	switch t := m["type"].(type) {
	case string:
		return t
	case []any:
		var names []string
		for _, x := range t {
			names = append(names, fmt.Sprint(x))
		}
		return "[" + strings.Join(names, ", ") + "]"
	}
	return "any"
}

func describeKw(m map[string]any, kw string) string {
	v, ok := m[kw]
	if !ok {
		return "none"
	}
	return truncate(describeValue(v), 100)
}

func describeSchema(s any) string {
	switch s {
	case true:
		return "true (anything)"
	case false:
		return "false (nothing allowed)"
	}
	return truncate(describeValue(s), 100)
}

func describeValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func describeValues(vs []any) string {
	return truncate(describeValue(vs), 100)
}

// values is the set of values enum and const allow, if either is present.
func values(m map[string]any) ([]any, bool) {
	if v, ok := m["const"]; ok {
		return []any{v}, true
	}
	if e, ok := m["enum"].([]any); ok {
		return e, true
	}
	return nil, false
}

func stringSet(v any) map[string]bool {
	set := map[string]bool{}
	xs, _ := v.([]any)
	for _, x := range xs {
		if s, ok := x.(string); ok {
			set[s] = true
		}
	}
	return set
}

func rat(v any) (*big.Rat, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	return new(big.Rat).SetString(string(n))
}

// jsonEqual compares decoded JSON values, numbers by value.
func jsonEqual(a, b any) bool {
	if n, ok := a.(json.Number); ok {
		ra, ok1 := rat(n)
		rb, ok2 := rat(b)
		return ok1 && ok2 && ra.Cmp(rb) == 0
	}
	if eq, ok := equalMembers(a, b, func(_ string, x, y any) bool { return jsonEqual(x, y) }); ok {
		return eq
	}
	return reflect.DeepEqual(a, b)
}

// equalMembers compares two JSON objects (or arrays): equal when they
// have the same names (or length) and eq holds for each pair of values,
// given the name (empty for items). ok is false when a is neither.
func equalMembers(a, b any, eq func(name string, x, y any) bool) (equal, ok bool) {
	switch a := a.(type) {
	case map[string]any:
		bm, isMap := b.(map[string]any)
		if !isMap || len(a) != len(bm) {
			return false, true
		}
		for k, v := range a {
			if bv, found := bm[k]; !found || !eq(k, v, bv) {
				return false, true
			}
		}
		return true, true
	case []any:
		bs, isArray := b.([]any)
		if !isArray || len(a) != len(bs) {
			return false, true
		}
		for i := range a {
			if !eq("", a[i], bs[i]) {
				return false, true
			}
		}
		return true, true
	}
	return false, false
}

// equal compares a part of the writer's schema with a part of the
// reader's as JSON, numbers by value, except that a $ref on both sides is
// equal when what they point to is (recursively; a pair met again is
// taken as equal). $dynamicRef, resolved at validation, must be absent.
func (c *checker) equal(a, b any, seen map[[2]string]bool) bool {
	if m, ok := a.(map[string]any); ok {
		if _, dyn := m["$dynamicRef"]; dyn {
			return false
		}
	}
	eq, ok := equalMembers(a, b, func(k string, x, y any) bool {
		aRef, isRef := x.(string)
		if k == "$ref" && isRef {
			bRef, _ := y.(string)
			return c.equalRefs(aRef, bRef, seen)
		}
		return c.equal(x, y, seen)
	})
	if ok {
		return eq
	}
	return jsonEqual(a, b)
}

func (c *checker) equalRefs(aRef, bRef string, seen map[[2]string]bool) bool {
	at, aPtr, ok1 := c.w.resolveRef(aRef)
	bt, bPtr, ok2 := c.r.resolveRef(bRef)
	if !ok1 || !ok2 {
		return false
	}
	key := [2]string{aPtr, bPtr}
	if seen[key] {
		return true
	}
	seen[key] = true
	if len(seen) > maxCheckSteps {
		return false
	}
	return c.equal(at, bt, seen)
}
