package streammodule_test

import (
	"context"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/wire"
)

// fixedMembers is a PresenceReader with a fixed list.
type fixedMembers []wire.Member

func (f fixedMembers) Members(context.Context, string, string) ([]wire.Member, error) { return f, nil }

// TestPresenceFunction: stream::presence pages a group's members in
// identity order with count and more, never shows meta_at, and needs the
// caller's right to read the group (stream::get).
func TestPresenceFunction(t *testing.T) {
	v := start(t, streammodule.Config{})
	k := `"stream_name":"rooms","group_id":"lobby"`
	if got := v.must(t, streammodule.FnPresence, `{`+k+`}`); got != `{"members":[],"count":0,"more":false}` {
		t.Fatalf("no reader yet: %s", got)
	}
	v.m.SetPresence(fixedMembers{
		{Identity: "ada", Connections: 2, JoinedAt: 1, Meta: []byte(`{"n":1}`), MetaAt: 5},
		{Identity: "bob", Connections: 1, JoinedAt: 2},
		{Identity: "cy", Anonymous: true, Connections: 1, JoinedAt: 3},
	})
	for _, tc := range []struct{ in, want string }{
		{`{` + k + `}`, `{"members":[{"identity":"ada","connections":2,"joined_at":1,"meta":{"n":1}},{"identity":"bob","connections":1,"joined_at":2},{"identity":"cy","anonymous":true,"connections":1,"joined_at":3}],"count":3,"more":false}`},
		{`{` + k + `,"limit":1}`, `{"members":[{"identity":"ada","connections":2,"joined_at":1,"meta":{"n":1}}],"count":3,"more":true}`},
		{`{` + k + `,"limit":1,"after":"ada"}`, `{"members":[{"identity":"bob","connections":1,"joined_at":2}],"count":3,"more":true}`},
		{`{` + k + `,"after":"cy"}`, `{"members":[],"count":3,"more":false}`},
	} {
		if got := v.must(t, streammodule.FnPresence, tc.in); got != tc.want {
			t.Errorf("stream::presence %s = %s, want %s", tc.in, got, tc.want)
		}
	}
	_, err := v.call(t, streammodule.FnPresence, `{"stream_name":"rooms"}`)
	wantCode(t, err, codes.InvalidArgument)

	// A caller that may not read streams may not list who is in them.
	if err := v.e.RegisterFunction("test::auth", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return []byte(`{"forbidden_functions":["stream::get"]}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	g, err := v.e.Authenticate(t.Context(), &engine.Access{AuthFunctionID: "test::auth", ExposeFunctions: []engine.Filter{{Match: "*"}}}, engine.AuthInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.e.Trigger(t.Context(), engine.Call{FunctionID: streammodule.FnPresence, Payload: []byte(`{` + k + `}`), Grant: g})
	wantCode(t, err, codes.Forbidden)
}
