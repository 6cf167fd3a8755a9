package streammodule_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/contracts"
)

// TestRefusalsRecorded: every write a stream's contract refuses
// (stream::set, the result of stream::update, stream::send, a group off
// the pattern) is listed by engine::streams::refusals, newest first, with
// the group, item, pointer and rule, the version, and the worker that
// tried, and none of the value; accepted writes and streams without a
// contract list nothing.
func TestRefusalsRecorded(t *testing.T) {
	t.Parallel()
	set := contracts.NewMemorySet(contracts.Streams)
	v := start(t, streammodule.Config{Contracts: set})
	s := moduletest.Session(t, v.e)
	k := `"stream_name":"todos","group_id":"list-1"`
	v.must(t, "stream::set", `{"stream_name":"free","group_id":"g","item_id":"x","data":{"title":1}}`)
	v.must(t, "stream::define", `{"stream_name":"todos","version":1,"item_schema":`+todoSchema+`,"group_id_pattern":"list-*","event_schemas":{"typing":{"type":"object","required":["user"]}}}`)
	v.must(t, "stream::set", `{`+k+`,"item_id":"a","data":{"title":"milk"}}`)
	for _, in := range []struct{ fn, in string }{
		{"stream::set", `{` + k + `,"item_id":"b","data":{"title":12345}}`},
		{"stream::update", `{` + k + `,"item_id":"a","ops":[{"type":"set","path":"title","value":""}]}`},
		{"stream::send", `{` + k + `,"type":"typing","data":{"secret":"s3cr3t"}}`},
		{"stream::set", `{"stream_name":"todos","group_id":"other","item_id":"c","data":{"title":"x"}}`},
	} {
		_, err := s.Call(t.Context(), engine.Call{FunctionID: in.fn, Payload: []byte(in.in)})
		wantCode(t, err, codes.InvalidArgument)
	}
	out := v.must(t, streammodule.FnRefusals, `{"stream_name":"todos"}`)
	if strings.Contains(out, "12345") || strings.Contains(out, "s3cr3t") {
		t.Fatalf("refusals carry the refused values: %s", out)
	}
	var got contracts.Refusals
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := []struct{ fn, group, item, event, err string }{
		{"stream::set", "other", "c", "", `group_id "other" does not match the stream's group_id_pattern "list-*"`},
		{"stream::send", "list-1", "", "typing", "/user: required"},
		{"stream::update", "list-1", "a", "", "/title: minLength"},
		{"stream::set", "list-1", "b", "", "/title: expected string, got number"},
	}
	if got.Held != len(want) || len(got.Refusals) != len(want) || got.MaxPerName != contracts.DefaultRefusalsPerName {
		t.Fatalf("refusals = %s, want %d", out, len(want))
	}
	for i, w := range want {
		r := got.Refusals[i]
		if r.Function != w.fn || r.Group != w.group || r.Item != w.item || r.EventType != w.event || !strings.HasPrefix(r.Error, w.err) ||
			r.Version != 1 || r.Caller.WorkerID != s.ID() || r.Caller.Name != "test" || r.Time.IsZero() {
			t.Fatalf("refusal %d = %+v, want %+v by worker %s", i, r, w, s.ID())
		}
	}
	if out := v.must(t, streammodule.FnRefusals, `{"stream_name":"todos","limit":1}`); !strings.Contains(out, `"held":4`) || strings.Count(out, `"function"`) != 1 {
		t.Fatalf("limit 1: %s", out)
	}
	if out := v.must(t, streammodule.FnRefusals, `{"stream_name":"free"}`); !strings.Contains(out, `"refusals":[]`) {
		t.Fatalf("a stream without a contract: %s", out)
	}
	for _, bad := range []string{`{}`, `{"stream_name":"todos","limit":-1}`, `{"stream_name":"todos","limit":"x"}`} {
		_, err := v.call(t, streammodule.FnRefusals, bad)
		wantCode(t, err, codes.InvalidArgument)
	}
	// Writes to many streams without a contract are never refused, and
	// add nothing to the record.
	for i := range 500 {
		v.must(t, "stream::set", `{"stream_name":"flood-`+strconv.Itoa(i)+`","group_id":"g","item_id":"x","data":{"title":1}}`)
	}
	if names, count, _ := set.RefusalsHeld(); names != 1 || count != len(want) {
		t.Fatalf("after writes to 500 streams without a contract: %d names, %d refusals held, want 1 and %d", names, count, len(want))
	}
}

// TestValidateItems: engine::streams::validate names the stored items of
// a group that fail the contract in force (here, stored before its first
// version), with the pointer and rule; an id of no item
// is skipped; a stream without a contract fails nothing; more ids than
// MaxValidateItems is invalid_argument.
func TestValidateItems(t *testing.T) {
	t.Parallel()
	v := start(t, streammodule.Config{})
	k := `"stream_name":"todos","group_id":"g"`
	v.must(t, "stream::set", `{`+k+`,"item_id":"old","data":{"title":7}}`)
	if out := v.must(t, streammodule.FnValidate, `{`+k+`,"item_ids":["old"]}`); out != `{"stream_name":"todos","group_id":"g","version":0,"checked":0,"failing":[]}` {
		t.Fatalf("without a contract: %s", out)
	}
	v.must(t, "stream::set", `{`+k+`,"item_id":"empty","data":{"title":""}}`)
	v.must(t, "stream::define", `{"stream_name":"todos","version":1,"item_schema":`+todoSchema+`}`)
	v.must(t, "stream::set", `{`+k+`,"item_id":"ok","data":{"title":"milk"}}`)
	var got streammodule.Validation
	if err := json.Unmarshal([]byte(v.must(t, streammodule.FnValidate, `{`+k+`,"item_ids":["old","empty","ok","gone"]}`)), &got); err != nil {
		t.Fatal(err)
	}
	want := []streammodule.ItemCheck{{ID: "old", Error: "/title: expected string, got number"}, {ID: "empty", Error: "/title: minLength"}}
	if got.Version != 1 || got.Checked != 3 || len(got.Failing) != 2 {
		t.Fatalf("validate = %+v, want %v of 3 checked against v1", got, want)
	}
	for i, w := range want {
		if got.Failing[i].ID != w.ID || !strings.HasPrefix(got.Failing[i].Error, w.Error) {
			t.Fatalf("failing[%d] = %+v, want %+v", i, got.Failing[i], w)
		}
	}
	many := `"x"` + strings.Repeat(`,"x"`, streammodule.MaxValidateItems)
	for _, bad := range []string{`{` + k + `}`, `{` + k + `,"item_ids":"old"}`, `{` + k + `,"item_ids":[` + many + `]}`, `{"stream_name":"todos","item_ids":[]}`} {
		_, err := v.call(t, streammodule.FnValidate, bad)
		wantCode(t, err, codes.InvalidArgument)
	}
}

// TestContractViewsNeedRead: a caller that may not read the stream's
// items (stream::get) is forbidden engine::streams::refusals and
// engine::streams::validate even when they are exposed to it.
func TestContractViewsNeedRead(t *testing.T) {
	t.Parallel()
	v := start(t, streammodule.Config{})
	v.must(t, "stream::define", `{"stream_name":"todos","version":1,"item_schema":`+todoSchema+`}`)
	_, _ = v.call(t, "stream::set", `{"stream_name":"todos","group_id":"g","item_id":"a","data":{}}`)
	g, err := v.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "engine::streams::*"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	for fn, in := range map[string]string{
		streammodule.FnRefusals: `{"stream_name":"todos"}`,
		streammodule.FnValidate: `{"stream_name":"todos","group_id":"g","item_ids":["a"]}`,
	} {
		out, err := v.e.Trigger(context.Background(), engine.Call{FunctionID: fn, Payload: []byte(in), Grant: g})
		wantCode(t, err, codes.Forbidden)
		if len(out) != 0 {
			t.Fatalf("%s answered %s to a caller that may not read", fn, out)
		}
	}
	// With stream::get as well, it may.
	g, err = v.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: "engine::streams::*"}, {Match: "stream::get"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := v.e.Trigger(context.Background(), engine.Call{FunctionID: streammodule.FnRefusals, Payload: []byte(`{"stream_name":"todos"}`), Grant: g})
	if err != nil || !strings.Contains(string(out), `"/title: required"`) {
		t.Fatalf("with stream::get: %s, %v", out, err)
	}
}
