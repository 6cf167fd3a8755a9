package statemodule_test

import (
	"strings"
	"testing"

	"github.com/trinehq/trine/codes"
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
