package contract

import (
	"strings"
	"testing"
)

func TestCompatible(t *testing.T) {
	t.Parallel()
	const (
		title     = `{"type":"object","properties":{"title":{"type":"string"}}}`
		titleNum  = `{"type":"object","properties":{"title":{"type":"number"}}}`
		titleReq  = `{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}`
		closed    = `{"type":"object","properties":{"title":{"type":"string"}},"additionalProperties":false}`
		closedAdd = `{"type":"object","properties":{"title":{"type":"string"},"done":{"type":"boolean"}},"additionalProperties":false}`
		open      = `{"type":"object","properties":{"title":{"type":"string"},"done":{"type":"boolean"}}}`
	)
	const d7 = `{"$schema":"http://json-schema.org/draft-07/schema#",`
	enum := func(vals string) string { return `{"properties":{"s":{"enum":[` + vals + `]}}}` }
	c := NewCompiler(Limits{})
	for name, tc := range map[string]struct {
		old, new string
		mode     Mode
		want     string // first problem, or "" for compatible
	}{
		"same": {title, title, FullTransitive, ""},
		// Other drafts differ in what keywords mean ($ref siblings, items
		// arrays): their schemas are compared whole.
		"draft-07 same":              {d7 + title[1:], d7 + title[1:], FullTransitive, ""},
		"draft-07 changed":           {d7 + title[1:], d7 + open[1:], Forward, "(root): schema in draft-07 -> draft-07: only draft 2020-12 schemas are compared part by part"},
		"draft changed":              {d7 + title[1:], title, Backward, "(root): schema in draft-07 -> draft 2020-12"},
		"draft-07 none":              {d7 + title[1:], d7 + titleNum[1:], None, ""},
		"type change backward":       {title, titleNum, Backward, "/title: type string -> number"},
		"type change forward":        {title, titleNum, Forward, "/title: type string -> number"},
		"type change none":           {title, titleNum, None, ""},
		"integer widened to number":  {`{"type":"integer"}`, `{"type":"number"}`, Backward, ""},
		"number narrowed to integer": {`{"type":"number"}`, `{"type":"integer"}`, Backward, "(root): type number -> integer"},
		"number narrowed forward":    {`{"type":"number"}`, `{"type":"integer"}`, Forward, ""},
		"type widened":               {`{"type":"string"}`, `{"type":["string","null"]}`, Backward, ""},
		"type widened forward":       {`{"type":"string"}`, `{"type":["string","null"]}`, Forward, "(root): type string -> [string, null]"},
		"required added backward":    {title, titleReq, Backward, "/title: required added"},
		"required added forward":     {title, titleReq, Forward, ""},
		"required removed forward":   {titleReq, title, Forward, "/title: required removed"},
		"required removed backward":  {titleReq, title, Backward, ""},
		"optional added, open fwd":   {title, open, Forward, ""},
		// An open schema allowed any "done" before: a typed one is a break.
		"optional added, open":      {title, open, Backward, "/done: type any -> boolean"},
		"property added to closed":  {closed, closedAdd, Backward, ""},
		"property added fwd closed": {closed, closedAdd, Forward, "/done: property added with additionalProperties false"},
		"required property added":   {closed, `{"type":"object","properties":{"title":{"type":"string"},"done":{"type":"boolean"}},"required":["done"],"additionalProperties":false}`, Forward, "/done: property added with additionalProperties false"},
		"property removed closed":   {closedAdd, closed, Backward, "/done: property removed with additionalProperties false"},
		"closed an open schema":     {open, `{"type":"object","properties":{"title":{"type":"string"},"done":{"type":"boolean"}},"additionalProperties":false}`, Backward, "/*: additionalProperties true (anything) -> false"},
		"enum widened":              {enum(`"a","b"`), enum(`"a","b","c"`), Backward, ""},
		"enum widened forward":      {enum(`"a","b"`), enum(`"a","b","c"`), Forward, `/s: enum value "c" added`},
		"enum narrowed":             {enum(`"a","b"`), enum(`"a"`), Backward, `/s: enum value "b" removed`},
		"enum added":                {`{"properties":{"s":{"type":"string"}}}`, enum(`"a"`), Backward, `/s: enum none -> ["a"]`},
		"enum numbers by value":     {enum(`1`), enum(`1.0`), Full, ""},
		"minimum tightened":         {`{"minimum":0}`, `{"minimum":5}`, Backward, "(root): minimum 0 -> minimum 5"},
		"minimum loosened":          {`{"minimum":5}`, `{"minimum":0}`, Backward, ""},
		"exclusive tighter":         {`{"minimum":5}`, `{"exclusiveMinimum":5}`, Backward, "(root): minimum 5 -> exclusiveMinimum 5"},
		"maximum added":             {`{"type":"integer"}`, `{"type":"integer","maximum":10}`, Backward, "(root): maximum none -> maximum 10"},
		"maximum on strings only":   {`{"type":"string"}`, `{"type":"string","maximum":10}`, Backward, ""},
		"maxLength tightened":       {`{"maxLength":10}`, `{"maxLength":5}`, Backward, "(root): maxLength 10 -> 5"},
		"minItems added":            {`{"type":"array"}`, `{"type":"array","minItems":1}`, Backward, "(root): minItems none -> 1"},
		"multipleOf finer":          {`{"multipleOf":4}`, `{"multipleOf":2}`, Backward, ""},
		"multipleOf coarser":        {`{"multipleOf":2}`, `{"multipleOf":4}`, Backward, "(root): multipleOf 2 -> 4"},
		"pattern changed":           {`{"type":"string","pattern":"^a"}`, `{"type":"string","pattern":"^b"}`, Backward, `(root): pattern "^a" -> "^b"`},
		"items type":                {`{"type":"array","items":{"type":"string"}}`, `{"type":"array","items":{"type":"integer"}}`, Backward, "/*: type string -> integer"},
		"nested":                    {`{"properties":{"o":{"properties":{"id":{"type":"string"}}}}}`, `{"properties":{"o":{"properties":{"id":{"type":"integer"}}}}}`, Backward, "/o/id: type string -> integer"},
		"defs via ref": {
			`{"$defs":{"T":{"type":"object","properties":{"title":{"type":"string"}}}},"$ref":"#/$defs/T"}`,
			`{"$defs":{"T":{"type":"object","properties":{"title":{"type":"number"}}}},"$ref":"#/$defs/T"}`,
			Backward, "/title: type string -> number"},
		"defs renamed": {
			`{"$defs":{"A":{"type":"string"}},"properties":{"x":{"$ref":"#/$defs/A"}}}`,
			`{"$defs":{"B":{"type":"string"}},"properties":{"x":{"$ref":"#/$defs/B"}}}`,
			FullTransitive, ""},
		"recursive": {
			`{"$defs":{"n":{"properties":{"v":{"type":"string"},"next":{"$ref":"#/$defs/n"}}}},"$ref":"#/$defs/n"}`,
			`{"$defs":{"n":{"properties":{"v":{"type":"integer"},"next":{"$ref":"#/$defs/n"}}}},"$ref":"#/$defs/n"}`,
			Backward, "/v: type string -> integer"},
		"false schema":          {`{"properties":{"x":{"type":"string"}}}`, `{"properties":{"x":false}}`, Backward, `/x: {"type":"string"} -> false (nothing allowed)`},
		"anyOf unchanged":       {`{"anyOf":[{"type":"string"},{"type":"null"}]}`, `{"anyOf":[{"type":"string"},{"type":"null"}]}`, Full, ""},
		"anyOf changed":         {`{"anyOf":[{"type":"string"},{"type":"null"}]}`, `{"anyOf":[{"type":"string"},{"type":"number"}]}`, Backward, "(root): anyOf changed, which is outside the checked subset (treated as incompatible)"},
		"anyOf dropped":         {`{"anyOf":[{"type":"string"},{"type":"null"}]}`, `{}`, Backward, ""},
		"anyOf dropped forward": {`{"anyOf":[{"type":"string"},{"type":"null"}]}`, `{}`, Forward, "(root): anyOf changed, which is outside the checked subset"},
		"anyOf of refs unchanged": {
			`{"$defs":{"a":{"type":"string"}},"properties":{"x":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}}}`,
			`{"$defs":{"b":{"type":"string"}},"properties":{"x":{"anyOf":[{"$ref":"#/$defs/b"},{"type":"null"}]}}}`,
			FullTransitive, ""},
		"anyOf ref target changed": {
			`{"$defs":{"a":{"type":"string"}},"properties":{"x":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}}}`,
			`{"$defs":{"a":{"type":"integer"}},"properties":{"x":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}}}`,
			Backward, "/x: anyOf changed, which is outside the checked subset (treated as incompatible)"},
		"patternProperties": {`{"additionalProperties":false}`, `{"patternProperties":{"^x":{}},"additionalProperties":false}`, Forward, "(root): patternProperties changed"},
		"annotations only":  {`{"type":"string","description":"a"}`, `{"type":"string","description":"b","title":"t"}`, FullTransitive, ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			old, new := mustCompile(t, c, tc.old), mustCompile(t, c, tc.new)
			got := Compatible(old, new, tc.mode, 5)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("Compatible(%s) = %q, want none", tc.mode, got)
				}
				return
			}
			if len(got) == 0 || !strings.HasPrefix(got[0], tc.want) {
				t.Fatalf("Compatible(%s) = %q, want first %q", tc.mode, got, tc.want)
			}
		})
	}
}

func TestCompatibleListsSeveralPaths(t *testing.T) {
	t.Parallel()
	c := NewCompiler(Limits{})
	old := mustCompile(t, c, `{"properties":{"a":{"type":"string"},"b":{"type":"string"},"c":{"type":"string"},"d":{"type":"string"}}}`)
	new := mustCompile(t, c, `{"properties":{"a":{"type":"number"},"b":{"type":"number"},"c":{"type":"number"},"d":{"type":"number"}}}`)
	got := Compatible(old, new, Backward, 3)
	want := []string{"/a: type string -> number", "/b: type string -> number", "/c: type string -> number"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("Compatible = %q, want %q", got, want)
	}
}
