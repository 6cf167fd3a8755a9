package streammodule_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
)

const todoSchema = `{"type":"object","properties":{"title":{"type":"string","minLength":1},"done":{"type":"boolean"}},"required":["title"],"additionalProperties":false}`

func wantRefused(t *testing.T, err error, code engine.Code, want string) {
	t.Helper()
	wantCode(t, err, code)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want it to say %q", err, want)
	}
}

// A stream with a contract refuses every write that breaks it, with the
// pointer and the rule, and the refusal stores and publishes nothing;
// stream::update is checked on its result, all or nothing.
func TestContractEnforced(t *testing.T) {
	v := start(t, streammodule.Config{})
	events := make(chan []byte, 16)
	cancel, err := v.sub.Subscribe("todos", "inbox", func(b []byte) { events <- append([]byte(nil), b...) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	k := `"stream_name":"todos","group_id":"inbox"`
	// Before a contract, anything goes.
	v.must(t, "stream::set", `{`+k+`,"item_id":"old","data":{"title":7}}`)
	<-events
	out := v.must(t, "stream::define", `{"stream_name":"todos","version":1,"item_schema":`+todoSchema+`,"event_schemas":{"typing":{"type":"object","properties":{"user":{"type":"string"}},"required":["user"]}}}`)
	if !strings.Contains(out, `"version":1`) {
		t.Fatalf("define: %s", out)
	}
	v.must(t, "stream::set", `{`+k+`,"item_id":"a","data":{"title":"milk"}}`)
	<-events
	for _, c := range []struct{ fn, in, want string }{
		{"stream::set", `{` + k + `,"item_id":"a","data":{"title":1}}`, "/title: expected string, got number"},
		{"stream::set", `{` + k + `,"item_id":"b","data":{"done":true}}`, "/title: required"},
		{"stream::update", `{` + k + `,"item_id":"a","ops":[{"type":"set","path":"done","value":true},{"type":"set","path":"color","value":"red"}]}`, "/color: not allowed"},
		{"stream::update", `{` + k + `,"item_id":"a","ops":[{"type":"set","path":"title","value":""}]}`, "/title: minLength"},
		{"stream::send", `{` + k + `,"type":"typing","data":{"user":3}}`, "/user: expected string, got number"},
		{"stream::send", `{` + k + `,"type":"shout","data":{}}`, `event type "shout" is not declared`},
	} {
		_, err := v.call(t, c.fn, c.in)
		wantRefused(t, err, codes.InvalidArgument, c.want)
		if !strings.Contains(err.Error(), "nothing was written") && !strings.Contains(err.Error(), "nothing was sent") {
			t.Fatalf("%s: %v", c.fn, err)
		}
	}
	if got := v.must(t, "stream::get", `{`+k+`,"item_id":"a","include_seq":true}`); got != `{"id":"a","data":{"title":"milk"},"seq":2}` {
		t.Fatalf("after refused writes: %s", got)
	}
	if got := v.must(t, "stream::get", `{`+k+`,"item_id":"b"}`); got != "null" {
		t.Fatalf("a refused set stored %s", got)
	}
	select {
	case e := <-events:
		t.Fatalf("a refused write published %s", e)
	case <-time.After(100 * time.Millisecond):
	}
	// What passes is stored and published.
	v.must(t, "stream::update", `{`+k+`,"item_id":"a","ops":[{"type":"set","path":"done","value":true}]}`)
	v.must(t, "stream::send", `{`+k+`,"type":"typing","data":{"user":"ann"}}`)
	for range 2 {
		select {
		case <-events:
		case <-time.After(5 * time.Second):
			t.Fatal("an accepted write was not published")
		}
	}
	// Items stored before are not checked again.
	if got := v.must(t, "stream::get", `{`+k+`,"item_id":"old"}`); got != `{"title":7}` {
		t.Fatalf("old item: %s", got)
	}
	// Another stream has no contract.
	v.must(t, "stream::set", `{"stream_name":"free","group_id":"g","item_id":"x","data":{"title":1}}`)
}

// Definitions are checked: lower or equal versions and breaks of the
// compatibility mode are conflict, a bad schema is invalid_argument, and
// engine::streams::schema answers the contract in force and its history.
func TestDefineAndSchema(t *testing.T) {
	v := start(t, streammodule.Config{})
	def := func(version int, schema, extra string) (string, error) {
		return v.call(t, "stream::define", `{"stream_name":"todos","version":`+strconv.Itoa(version)+`,"item_schema":`+schema+extra+`}`)
	}
	if out := v.must(t, "engine::streams::schema", `{"stream_name":"todos"}`); out != `{"stream_name":"todos","current":null,"history":[]}` {
		t.Fatalf("schema without a contract: %s", out)
	}
	if _, err := def(1, todoSchema, ""); err != nil {
		t.Fatal(err)
	}
	_, err := def(1, todoSchema, "")
	wantRefused(t, err, codes.Conflict, "version 1 is not above the last, 1")
	// Making title a number breaks BACKWARD.
	_, err = def(2, strings.Replace(todoSchema, `"title":{"type":"string","minLength":1}`, `"title":{"type":"number"}`, 1), "")
	wantRefused(t, err, codes.Conflict, "/title: type string -> number")
	_, err = def(2, `{"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}`, "")
	wantCode(t, err, codes.InvalidArgument)
	_, err = def(2, todoSchema, `,"compatibility":"SIDEWAYS"`)
	wantCode(t, err, codes.InvalidArgument)
	_, err = v.call(t, "stream::define", `{"stream_name":"todos","item_schema":{}}`)
	wantRefused(t, err, codes.InvalidArgument, "missing field version")
	// Adding an optional property is BACKWARD compatible; NONE forces a break.
	added := strings.Replace(todoSchema, `"done":{"type":"boolean"}`, `"done":{"type":"boolean"},"tags":{"type":"array"}`, 1)
	if _, err := def(2, added, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := def(5, `{"type":"object"}`, `,"compatibility":"NONE"`); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Stream  string `json:"stream_name"`
		Current struct {
			Version uint64          `json:"version"`
			Mode    string          `json:"compatibility"`
			Item    json.RawMessage `json:"item_schema"`
		} `json:"current"`
		History []struct {
			Version uint64 `json:"version"`
			Mode    string `json:"compatibility"`
		} `json:"history"`
	}
	if err := json.Unmarshal([]byte(v.must(t, "engine::streams::schema", `{"stream_name":"todos"}`)), &s); err != nil {
		t.Fatal(err)
	}
	if s.Current.Version != 5 || s.Current.Mode != "NONE" || string(s.Current.Item) != `{"type":"object"}` || len(s.History) != 3 ||
		s.History[0].Version != 1 || s.History[0].Mode != "BACKWARD" || s.History[1].Version != 2 {
		t.Fatalf("schema: %+v", s)
	}
	// The contract in force is the last one.
	v.must(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"x","data":{"anything":1}}`)
	_, err = v.call(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"x","data":[]}`)
	wantRefused(t, err, codes.InvalidArgument, "(root): expected object, got array")
}

// A contract's group_id_pattern refuses set, update and send to groups
// off the pattern, storing nothing; engine::streams::schemas lists it.
func TestContractGroupIDPattern(t *testing.T) {
	v := start(t, streammodule.Config{})
	v.must(t, "stream::define", `{"stream_name":"todos","version":1,"group_id_pattern":"list-*","item_schema":{"type":"object"}}`)
	v.must(t, "stream::set", `{"stream_name":"todos","group_id":"list-1","item_id":"a","data":{}}`)
	for _, c := range []struct{ fn, in string }{
		{"stream::set", `{"stream_name":"todos","group_id":"inbox","item_id":"a","data":{}}`},
		{"stream::update", `{"stream_name":"todos","group_id":"inbox","item_id":"a","ops":[{"type":"set","path":"x","value":1}]}`},
		{"stream::send", `{"stream_name":"todos","group_id":"inbox","type":"x","data":{}}`},
	} {
		_, err := v.call(t, c.fn, c.in)
		wantRefused(t, err, codes.InvalidArgument, `group_id "inbox" does not match the stream's group_id_pattern "list-*"`)
	}
	if got := v.must(t, "stream::list_groups", `{"stream_name":"todos"}`); strings.Contains(got, "inbox") {
		t.Fatalf("a refused write stored something: %s", got)
	}
	if got := v.must(t, "engine::streams::schemas", `{}`); !strings.Contains(got, `"group_id_pattern":"list-*"`) || !strings.Contains(got, `"stream_name":"todos"`) {
		t.Fatalf("engine::streams::schemas: %s", got)
	}
}

// A custom stream whose worker serves update itself is trusted with the
// value it computes, but not with the group: a stream::update to a group
// off the contract's group_id_pattern is refused before the worker is
// called, as for set.
func TestCustomUpdateKeepsTheGroupPattern(t *testing.T) {
	v := start(t, streammodule.Config{})
	var calls atomic.Int64
	for _, op := range []string{"set", "update"} {
		if err := v.e.RegisterFunction(streammodule.CustomFunctionID(op, "ext"), "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
			calls.Add(1)
			return []byte(`{"old_value":null,"new_value":{"n":1}}`), nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	v.must(t, "stream::define", `{"stream_name":"ext","version":1,"group_id_pattern":"list-*","item_schema":{"type":"object"}}`)
	_, err := v.call(t, "stream::set", `{"stream_name":"ext","group_id":"inbox","item_id":"i","data":{"n":1}}`)
	wantCode(t, err, codes.InvalidArgument)
	_, err = v.call(t, "stream::update", `{"stream_name":"ext","group_id":"inbox","item_id":"i","ops":[{"type":"set","path":"n","value":1}]}`)
	wantCode(t, err, codes.InvalidArgument)
	if n := calls.Load(); n != 0 {
		t.Fatalf("the custom stream's worker was called %d times for groups off the pattern", n)
	}
	v.must(t, "stream::update", `{"stream_name":"ext","group_id":"list-1","item_id":"i","ops":[{"type":"set","path":"n","value":1}]}`)
}

// engine::streams::schemas answers every stream's contract: within
// --max-list-bytes, as the other lists do. Past it, an unpaged call is
// refused (message_too_large) before the answer is built, and limit and
// after read it in pages; stream_names reads only the streams named
// (what trine codegen ts --streams asks).
func TestSchemasAnswerIsBounded(t *testing.T) {
	v := start(t, streammodule.Config{Lists: store.NewLists(2000, 0)})
	pad := strings.Repeat("x", 500)
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		v.must(t, "stream::define", `{"stream_name":"`+s+`","version":1,"item_schema":{"description":"`+pad+`"}}`)
	}
	_, err := v.call(t, "engine::streams::schemas", `{}`)
	wantRefused(t, err, codes.MessageTooLarge, `add "limit"`)
	var names []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		var page struct {
			Streams []struct {
				Name string `json:"stream_name"`
			} `json:"streams"`
			More bool `json:"more"`
		}
		in, _ := json.Marshal(map[string]any{"limit": 100, "after": after})
		out := v.must(t, "engine::streams::schemas", string(in))
		if len(out) > 2000 {
			t.Fatalf("a page of %d bytes", len(out))
		}
		if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Streams) == 0 {
			t.Fatalf("page %s: %v", out, err)
		}
		for _, s := range page.Streams {
			names = append(names, s.Name)
		}
		after = names[len(names)-1]
		if !page.More {
			break
		}
	}
	if strings.Join(names, ",") != "a,b,c,d,e" {
		t.Fatalf("pages gave %v", names)
	}
	out := v.must(t, "engine::streams::schemas", `{"stream_names":["d","b","zz"]}`)
	var only struct {
		Streams []struct {
			Name string `json:"stream_name"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(out), &only); err != nil || len(only.Streams) != 2 || only.Streams[0].Name != "b" || only.Streams[1].Name != "d" {
		t.Fatalf("stream_names [d b zz]: %s", out)
	}
}
