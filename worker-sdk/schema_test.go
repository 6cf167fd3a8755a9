package trine_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/contract"
	trine "github.com/trinehq/trine/worker-sdk"
)

type person struct {
	ID   int64  `json:"id"`
	Name string `json:"name,omitempty"`
}

type audit struct {
	CreatedBy string `json:"created_by"`
}

type task struct {
	audit
	Title    string             `json:"title" jsonschema:"minLength=1"`
	Done     bool               `json:"done"`
	Priority int                `json:"priority,omitempty" jsonschema:"minimum=0,maximum=5"`
	Tags     []string           `json:"tags"`
	Owner    *person            `json:"owner,omitempty"`
	Assignee *person            `json:"assignee"`
	Due      time.Time          `json:"due"`
	Counts   map[string]int     `json:"counts"`
	Blob     []byte             `json:"blob"`
	Parent   *task              `json:"parent"`
	Children []*task            `json:"children"`
	Extra    any                `json:"extra"`
	Labels   map[string]*person `json:"labels,omitempty"`
	//lint:ignore U1000 an unexported field, which encoding/json and the schema leave out
	internal int
}

func TestSchemaForValidatesWhatEncodingJSONWrites(t *testing.T) {
	t.Parallel()
	src, err := trine.SchemaFor[task]()
	if err != nil {
		t.Fatalf("SchemaFor[task]() = %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["$schema"] != contract.Draft202012 {
		t.Fatalf("$schema = %v, want %s", doc["$schema"], contract.Draft202012)
	}
	s, err := contract.NewCompiler(contract.Limits{}).Compile(src)
	if err != nil {
		t.Fatalf("Compile(SchemaFor[task]) = %v\n%s", err, src)
	}
	full := task{
		audit: audit{CreatedBy: "ann"}, Title: "write", Done: true, Priority: 3, Tags: []string{"a"},
		Owner: &person{ID: 1, Name: "ann"}, Assignee: &person{ID: 2}, Due: time.Date(2026, 12, 7, 5, 0, 0, 1, time.UTC),
		Counts: map[string]int{"x": 1}, Blob: []byte{1, 2}, Children: []*task{{Title: "child"}, nil},
		Parent: &task{Title: "parent"}, Extra: map[string]any{"k": []any{1, "x"}}, Labels: map[string]*person{"l": nil},
	}
	for name, v := range map[string]task{"minimal": {Title: "x"}, "full": full} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(b); err != nil {
			t.Errorf("Validate(%s %s) = %v\nschema %s", name, b, err, src)
		}
	}
	for patch, want := range map[string]string{
		`{"title":5}`:           "/title: expected string, got number",
		`{"title":""}`:          "/title: minLength: got 0, want 1",
		`{"priority":9}`:        "/priority: maximum: ",
		`{"owner":{"id":"1"}}`:  "/owner/id: expected integer, got string",
		`{"colour":"red"}`:      "/colour: not allowed (additionalProperties)",
		`{"due":"tomorrow"}`:    "/due: format: ",
		`{"parent":{"done":1}}`: "/parent/done: expected boolean, got number",
		`{"tags":"a"}`:          "/tags: expected null or array, got string",
		`{"children":[5]}`:      "/children/0: expected null, got number; /children/0: expected object, got number",
	} {
		base, _ := json.Marshal(task{Title: "x", Parent: &task{Title: "p"}})
		var v map[string]any
		_ = json.Unmarshal(base, &v)
		_ = json.Unmarshal([]byte(patch), &v)
		if p, ok := v["parent"].(map[string]any); ok && strings.Contains(patch, "parent") {
			full, _ := json.Marshal(task{Title: "p"})
			var pv map[string]any
			_ = json.Unmarshal(full, &pv)
			for k, x := range p {
				pv[k] = x
			}
			v["parent"] = pv
		}
		b, _ := json.Marshal(v)
		err := s.Validate(b)
		if !errors.Is(err, contract.ErrInvalidValue) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Validate(%s) = %v, want %q", b, err, want)
		}
	}
}

func TestSchemaForRefusesWhatEncodingJSONCannotWrite(t *testing.T) {
	t.Parallel()
	type bad struct {
		C chan int `json:"c"`
	}
	if _, err := trine.SchemaFor[bad](); err == nil || !strings.Contains(err.Error(), "field C: encoding/json cannot write a chan") {
		t.Fatalf("SchemaFor[bad]() error = %v", err)
	}
	if _, err := trine.SchemaFor[func()](); err == nil {
		t.Fatal("SchemaFor[func()]() succeeded")
	}
	if src, err := trine.SchemaFor[[]int](); err != nil || !strings.Contains(string(src), `"items":{"type":"integer"}`) {
		t.Fatalf("SchemaFor[[]int]() = %s, %v", src, err)
	}
}

// TestSchemaForEvolves: schemas of successive Go types compare under the
// engine's compatibility modes.
func TestSchemaForEvolves(t *testing.T) {
	t.Parallel()
	type v1 struct {
		Title string `json:"title"`
	}
	type v2 struct {
		Title string `json:"title"`
		Done  *bool  `json:"done,omitempty"`
	}
	type v3 struct {
		Title int   `json:"title"`
		Done  *bool `json:"done,omitempty"`
	}
	c := contract.NewCompiler(contract.Limits{})
	compile := func(src json.RawMessage, err error) *contract.Schema {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1, s2, s3 := compile(trine.SchemaFor[v1]()), compile(trine.SchemaFor[v2]()), compile(trine.SchemaFor[v3]())
	if got := contract.Compatible(s1, s2, contract.Backward, 3); len(got) != 0 {
		t.Fatalf("v1 -> v2 (optional field added) under BACKWARD: %q, want compatible", got)
	}
	if got := contract.Compatible(s1, s2, contract.Forward, 3); len(got) != 1 || got[0] != "/done: property added with additionalProperties false" {
		t.Fatalf("v1 -> v2 under FORWARD: %q", got)
	}
	if got := contract.Compatible(s2, s3, contract.Backward, 3); len(got) != 1 || got[0] != "/title: type string -> integer" {
		t.Fatalf("v2 -> v3 under BACKWARD: %q", got)
	}
}
