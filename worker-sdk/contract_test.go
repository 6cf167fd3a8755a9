package trine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	trine "github.com/trinehq/trine/worker-sdk"
)

type contractTodo struct {
	Title string `json:"title" jsonschema:"minLength=1"`
	Done  bool   `json:"done"`
}

type contractTodoV2 struct {
	Title string   `json:"title" jsonschema:"minLength=1"`
	Done  bool     `json:"done"`
	Tags  []string `json:"tags,omitempty"`
}

type typing struct {
	User string `json:"user"`
}

func wantCodeSaying(t *testing.T, err error, code trine.Code, say string) {
	t.Helper()
	var te *trine.Error
	if !errors.As(err, &te) || te.Code != code || !strings.Contains(te.Message, say) {
		t.Fatalf("got %v, want %s saying %q", err, code, say)
	}
}

// DefineStream derives the contract from the Go type, the engine enforces
// it on every writer, a worker may define it again on each start, and a
// new version of the type goes through the compatibility check.
func TestDefineStream(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()
	s, err := trine.DefineStream[contractTodo](ctx, w, "todos", trine.WithEvent[typing]("typing"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "g", "a", contractTodo{Title: "milk"}); err != nil {
		t.Fatal(err)
	}
	// The type's rules hold for any writer: an untyped one, and the typed
	// handle itself (minLength is beyond what Go's type says).
	_, err = w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "todos", "group_id": "g", "item_id": "b", "data": map[string]any{"title": 1, "done": false}})
	wantCodeSaying(t, err, trine.CodeInvalidArgument, "/title: expected string, got number")
	_, err = s.Set(ctx, "g", "b", contractTodo{})
	wantCodeSaying(t, err, trine.CodeInvalidArgument, "/title: minLength")
	_, err = s.Send(ctx, "g", "typing", map[string]any{"user": 7})
	wantCodeSaying(t, err, trine.CodeInvalidArgument, "/user: expected string, got number")
	_, err = s.Send(ctx, "g", "shout", map[string]any{})
	wantCodeSaying(t, err, trine.CodeInvalidArgument, `event type "shout" is not declared`)
	if _, err := s.Send(ctx, "g", "typing", typing{User: "ann"}); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.Get(ctx, "g", "b"); found {
		t.Fatal("a refused write stored the item")
	}
	// The same definition again: a restart.
	if _, err := trine.DefineStream[contractTodo](ctx, w, "todos", trine.WithEvent[typing]("typing")); err != nil {
		t.Fatalf("defining the contract in force again: %v", err)
	}
	// Another type under the same version, or one the mode refuses.
	_, err = trine.DefineStream[typing](ctx, w, "todos")
	wantCodeSaying(t, err, trine.CodeConflict, "version 1 is not above the last, 1")
	_, err = trine.DefineStream[typing](ctx, w, "todos", trine.WithContractVersion(2), trine.WithEvent[typing]("typing"))
	wantCodeSaying(t, err, trine.CodeConflict, "incompatible with version 1 (BACKWARD)")
	// Adding an optional field is BACKWARD compatible.
	s2, err := trine.DefineStream[contractTodoV2](ctx, w, "todos", trine.WithContractVersion(2), trine.WithEvent[typing]("typing"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Set(ctx, "g", "c", contractTodoV2{Title: "x", Tags: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	_, err = trine.DefineStream[chan int](ctx, w, "bad")
	wantCodeSaying(t, err, trine.CodeInvalidArgument, "schema for chan int")
}

type countedTodo struct {
	Title int  `json:"title"`
	Done  bool `json:"done"`
}

// A new version that stored items break is refused naming them; with
// WithMigrate the worker's function converts them and the version passes.
func TestDefineStreamMigrates(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()
	s, err := trine.DefineStream[contractTodo](ctx, w, "todos")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "g", "a", contractTodo{Title: "milk"}); err != nil {
		t.Fatal(err)
	}
	_, err = trine.DefineStream[countedTodo](ctx, w, "todos", trine.WithContractVersion(2), trine.WithCompatibility("NONE"))
	wantCodeSaying(t, err, trine.CodeConflict, `1 stored items fail version 2: {"group_id":"g","item_id":"a","stream_name":"todos"}; first: /title: expected integer, got string`)
	type migrateIn struct {
		Data contractTodo `json:"data"`
	}
	if err := trine.RegisterFunctionTyped(ctx, w, "todos::to_v2", func(_ context.Context, in migrateIn) (countedTodo, error) {
		return countedTodo{Title: len(in.Data.Title), Done: in.Data.Done}, nil
	}); err != nil {
		t.Fatal(err)
	}
	s2, err := trine.DefineStream[countedTodo](ctx, w, "todos", trine.WithContractVersion(2), trine.WithCompatibility("NONE"), trine.WithMigrate("todos::to_v2"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := s2.Get(ctx, "g", "a"); err != nil || got.Data.Title != 4 {
		t.Fatalf("migrated item: %+v, %v", got, err)
	}
}

// WithGroupIDPattern gives the stream a group id pattern: writes to a
// group off it are refused, and the contract (what codegen reads) carries
// it; defining the same again on a restart succeeds.
func TestDefineStreamGroupIDPattern(t *testing.T) {
	t.Parallel()
	srv, _ := startStreamEngine(t)
	w := connect(t, srv.Addr)
	ctx := t.Context()
	s, err := trine.DefineStream[contractTodo](ctx, w, "rooms", trine.WithGroupIDPattern("room-*"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "room-1", "a", contractTodo{Title: "milk"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Set(ctx, "lobby", "a", contractTodo{Title: "milk"})
	wantCodeSaying(t, err, trine.CodeInvalidArgument, `group_id "lobby" does not match the stream's group_id_pattern "room-*"`)
	_, err = s.Send(ctx, "lobby", "typing", map[string]any{})
	wantCodeSaying(t, err, trine.CodeInvalidArgument, `group_id "lobby" does not match`)
	if _, found, _ := s.Get(ctx, "lobby", "a"); found {
		t.Fatal("a refused write stored the item")
	}
	for _, fn := range []string{"engine::streams::schemas", "engine::streams::schema"} {
		out, err := w.Trigger(ctx, fn, map[string]any{"stream_name": "rooms"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), `"group_id_pattern":"room-*"`) {
			t.Fatalf("%s: %s", fn, out)
		}
	}
	if _, err := trine.DefineStream[contractTodo](ctx, w, "rooms", trine.WithGroupIDPattern("room-*")); err != nil {
		t.Fatalf("defining the contract in force again: %v", err)
	}
	// Another pattern under the same version is another definition.
	_, err = trine.DefineStream[contractTodo](ctx, w, "rooms", trine.WithGroupIDPattern("hall-*"))
	wantCodeSaying(t, err, trine.CodeConflict, "version 1 is not above the last, 1")
}
