package statemodule_test

import (
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/statemodule"
)

// A scope with a contract refuses set and update results that break it,
// naming the pointer and the rule, and stores nothing; other scopes take
// anything.
func TestScopeContractEnforced(t *testing.T) {
	v := start(t, statemodule.Config{})
	v.must(t, "state::define", `{"scope":"users","version":1,"item_schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0}},"required":["name"]}}`)
	v.must(t, "state::set", `{"scope":"users","key":"u1","value":{"name":"ann","age":3}}`)
	for _, c := range []struct{ fn, in, want string }{
		{"state::set", `{"scope":"users","key":"u1","value":{"name":5}}`, "/name: expected string, got number"},
		{"state::set", `{"scope":"users","key":"u2","value":{"age":1}}`, "/name: required"},
		{"state::update", `{"scope":"users","key":"u1","ops":[{"type":"set","path":"name","value":"bo"},{"type":"increment","path":"age","by":-10}]}`, "/age: minimum"},
	} {
		_, err := v.call(c.fn, c.in)
		wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was written") {
			t.Fatalf("%s: %v, want %q", c.fn, err, c.want)
		}
	}
	wantJSON(t, v.must(t, "state::get", `{"scope":"users","key":"u1","include_seq":true}`), `{"key":"u1","value":{"name":"ann","age":3},"seq":1}`)
	wantJSON(t, v.must(t, "state::get", `{"scope":"users","key":"u2"}`), `null`)
	_, err := v.call("state::define", `{"scope":"users","version":1,"item_schema":{}}`)
	wantCode(t, err, codes.Conflict)
	_, err = v.call("state::define", `{"scope":"users","version":2,"item_schema":{},"event_schemas":{"x":{}}}`)
	wantCode(t, err, codes.InvalidArgument)
	v.must(t, "state::set", `{"scope":"other","key":"k","value":{"name":5}}`)
}

// engine::state::schema answers a scope's contract in force and its
// history, engine::state::schemas every scope's in force; both are
// engine functions, which a listener exposes as it does
// engine::streams::schema.
func TestScopeSchema(t *testing.T) {
	v := start(t, statemodule.Config{})
	wantJSON(t, v.must(t, "engine::state::schema", `{"scope":"users"}`), `{"scope":"users","current":null,"history":[]}`)
	v.must(t, "state::define", `{"scope":"users","version":1,"item_schema":{"type":"object"}}`)
	v.must(t, "state::define", `{"scope":"users","version":2,"compatibility":"NONE","item_schema":{"type":"object","required":["name"]}}`)
	v.must(t, "state::define", `{"scope":"carts","version":1,"item_schema":{}}`)
	wantJSON(t, v.must(t, "engine::state::schema", `{"scope":"users"}`), `{"scope":"users",
		"current":{"scope":"users","version":2,"compatibility":"NONE","item_schema":{"type":"object","required":["name"]}},
		"history":[{"scope":"users","version":1,"compatibility":"BACKWARD","item_schema":{"type":"object"}},
			{"scope":"users","version":2,"compatibility":"NONE","item_schema":{"type":"object","required":["name"]}}]}`)
	wantJSON(t, v.must(t, "engine::state::schemas", `{}`), `{"scopes":[
		{"scope":"carts","version":1,"compatibility":"BACKWARD","item_schema":{}},
		{"scope":"users","version":2,"compatibility":"NONE","item_schema":{"type":"object","required":["name"]}}]}`)
	_, err := v.call("engine::state::schema", `{}`)
	wantCode(t, err, codes.InvalidArgument)

	only := func(match string) *engine.Grant {
		g, err := v.e.Authenticate(t.Context(), &engine.Access{ExposeFunctions: []engine.Filter{{Match: match}}}, engine.AuthInput{})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	for _, c := range []struct {
		expose string
		code   engine.Code
	}{{"state::*", codes.Forbidden}, {"engine::*", ""}} {
		for _, fn := range []string{"engine::state::schema", "engine::state::schemas"} {
			call, err := v.e.Authorize(only(c.expose), engine.Call{FunctionID: fn, Payload: []byte(`{"scope":"users"}`)})
			if err == nil {
				_, err = v.e.Trigger(t.Context(), call)
			}
			if c.code == "" && err != nil || c.code != "" && engine.AsError(err).Code != c.code {
				t.Fatalf("%s exposing %s: %v, want %q", fn, c.expose, err, c.code)
			}
		}
	}
}
