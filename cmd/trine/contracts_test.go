package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

const contractTodo = `{"type":"object","properties":{"title":{"type":"string"},"done":{"type":"boolean"}},"required":["title"],"additionalProperties":false}`

// refusedWith fails unless err is invalid_argument (or code) saying want.
func refusedWith(t *testing.T, err error, code, want string) {
	t.Helper()
	var te *trine.Error
	if !errors.As(err, &te) || string(te.Code) != code || !strings.Contains(te.Message, want) {
		t.Fatalf("got %v, want %s saying %q", err, code, want)
	}
}

// TestFleetSharesContracts: on a JetStream fleet, a contract defined
// through one engine is enforced by the other, which also refuses a
// version the first already took; a definition through the second is in
// force on the first. State scopes' contracts are shared the same way.
func TestFleetSharesContracts(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	js := []string{"--nats-url", ns.ClientURL(), "--store", "jetstream"}
	a := startEngine(t, trineBin, testEnv(), engineArgs(t, js...)...)
	b := startEngine(t, trineBin, testEnv(), engineArgs(t, js...)...)
	wa, wb := connectWorker(t, a.grpc), connectWorker(t, b.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	item := func(data any) map[string]any {
		return map[string]any{"stream_name": "todos", "group_id": "g", "item_id": "x", "data": data}
	}
	// B writes first, so it has looked the stream up before any contract.
	if _, err := wb.Trigger(ctx, "stream::set", item(map[string]any{"title": 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := wa.Trigger(ctx, "stream::define", map[string]any{"stream_name": "todos", "version": 1, "item_schema": json.RawMessage(contractTodo)}); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 20*time.Second, func() error {
		_, err := wb.Trigger(ctx, "stream::set", item(map[string]any{"title": 2}))
		if err == nil {
			return errors.New("engine B still takes a write the contract refuses")
		}
		return nil
	})
	_, err := wb.Trigger(ctx, "stream::set", item(map[string]any{"title": 2}))
	refusedWith(t, err, "invalid_argument", "/title: expected string, got number")
	out, err := wb.Trigger(ctx, "stream::get", map[string]any{"stream_name": "todos", "group_id": "g", "item_id": "x"})
	if err != nil || string(out) != `{"title":1}` {
		t.Fatalf("after the refusal B reads %s, %v", out, err)
	}
	_, err = wb.Trigger(ctx, "stream::define", map[string]any{"stream_name": "todos", "version": 1, "item_schema": json.RawMessage(`{}`)})
	refusedWith(t, err, "conflict", "version 1 is not above the last, 1")
	if _, err := wb.Trigger(ctx, "stream::define", map[string]any{"stream_name": "todos", "version": 2, "item_schema": json.RawMessage(`{}`), "compatibility": "NONE"}); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 20*time.Second, func() error {
		_, err := wa.Trigger(ctx, "stream::set", item(map[string]any{"title": 3}))
		return err
	})
	// State scopes too.
	if _, err := wb.Trigger(ctx, "state::define", map[string]any{"scope": "users", "version": 1, "item_schema": json.RawMessage(`{"type":"object","required":["name"]}`)}); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 20*time.Second, func() error {
		if _, err := wa.Trigger(ctx, "state::set", map[string]any{"scope": "users", "key": "u", "value": map[string]any{}}); err == nil {
			return errors.New("engine A still takes a state value the contract refuses")
		}
		return nil
	})
	_, err = wa.Trigger(ctx, "state::set", map[string]any{"scope": "users", "key": "u", "value": map[string]any{}})
	refusedWith(t, err, "invalid_argument", "/name: required")
	out, err = wa.Trigger(ctx, "engine::streams::schema", map[string]any{"stream_name": "todos"})
	var s struct {
		Current struct{ Version int } `json:"current"`
		History []json.RawMessage     `json:"history"`
	}
	if err != nil || json.Unmarshal(out, &s) != nil || s.Current.Version != 2 || len(s.History) != 2 {
		t.Fatalf("schema on A: %s, %v", out, err)
	}
}

// TestEngineStreamsFromConfig: YAML streams: defines contracts at start,
// from schema files beside the configuration; they survive a restart on
// the same data, and a bad schema file stops the start, naming it.
func TestEngineStreamsFromConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	write("todo.json", contractTodo)
	write("typing.json", `{"type":"object","properties":{"user":{"type":"string"}},"required":["user"]}`)
	cfg := write("trine.yaml", `streams:
  - name: todos
    schema: todo.json
    event_schemas: {typing: typing.json}
    version: 3
    compatibility: full
`)
	data := filepath.Join(dir, "data")
	args := append(engineArgs(t, "--config", cfg), "--data-dir", data)
	for run := range 2 { // the second start finds version 3 in force
		e := startEngine(t, trineBin, testEnv(), args...)
		w := connectWorker(t, e.grpc)
		ctx := t.Context()
		_, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "todos", "group_id": "g", "item_id": "x", "data": map[string]any{"title": false}})
		refusedWith(t, err, "invalid_argument", "/title: expected string, got boolean")
		_, err = w.Trigger(ctx, "stream::send", map[string]any{"stream_name": "todos", "group_id": "g", "type": "typing", "data": map[string]any{}})
		refusedWith(t, err, "invalid_argument", "/user: required")
		out, err := w.Trigger(ctx, "engine::streams::schema", map[string]any{"stream_name": "todos"})
		if err != nil || !strings.Contains(string(out), `"version":3,"compatibility":"FULL"`) {
			t.Fatalf("start %d: schema %s, %v", run, out, err)
		}
		w.Close()
		e.signal(t, syscall.SIGTERM)
		if code := e.wait(t, exitTimeout); code != 0 {
			t.Fatalf("exit %d after SIGTERM", code)
		}
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"MissingFile", "streams:\n  - {name: a, schema: nope.json, version: 1}\n", "nope.json"},
		{"NotJSON", "streams:\n  - {name: a, schema: trine.yaml, version: 1}\n", "is not JSON"},
		{"BadMode", "streams:\n  - {name: a, schema: todo.json, version: 1, compatibility: sideways}\n", `mode "sideways"`},
		{"UnknownField", "streams:\n  - {name: a, schema: todo.json, version: 1, colour: red}\n", "colour"},
	} {
		r := runTrine(t, testEnv(), "", engineArgs(t, "--config", write(c.name+".yaml", c.yaml))...)
		if r.code != 2 || !strings.Contains(r.stderr, "streams:") || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming %q", c.name, r.code, r.stderr, c.want)
		}
	}
	// A schema that does not compile, or a changed schema under a version
	// in force, stops the start.
	write("remote.json", `{"$ref":"https://example.com/x.json"}`)
	for _, c := range []struct{ yaml, want string }{
		{"streams:\n  - {name: r, schema: remote.json, version: 1}\n", "item_schema"},
		{"streams:\n  - {name: todos, schema: typing.json, version: 3}\n", "version 3 is already defined, differently"},
	} {
		r := runTrine(t, testEnv(), "", append(engineArgs(t, "--config", write("start.yaml", c.yaml)), "--data-dir", data)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("exit %d, stderr %q; want a failure naming %q", r.code, r.stderr, c.want)
		}
	}
}

// fileWriter returns a function that writes a file under dir and returns
// its path.
func fileWriter(t *testing.T, dir string) func(name, text string) string {
	return func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// TestEngineStreamsFromConfigCheckStored: a new version in YAML streams:
// is checked against what the stream stores, as stream::define checks it:
// a version that stored items break stops the start naming the stream,
// the path and the items; one they satisfy is taken.
func TestEngineStreamsFromConfigCheckStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	write("open.json", `{"type":"object","properties":{"title":{}},"required":["title"]}`)
	write("strict.json", `{"type":"object","properties":{"title":{"type":"number"}},"required":["title"]}`)
	write("object.json", `{"type":"object"}`)
	conf := func(schema string, version int) string {
		return write("trine.yaml", "streams:\n  - {name: todos, schema: "+schema+", version: "+strconv.Itoa(version)+", compatibility: NONE}\n")
	}
	data := filepath.Join(dir, "data")
	e := startEngine(t, trineBin, testEnv(), append(engineArgs(t, "--config", conf("open.json", 1)), "--data-dir", data)...)
	w := connectWorker(t, e.grpc)
	for id, title := range map[string]any{"a": "milk", "b": 2, "c": "eggs"} {
		if _, err := w.Trigger(t.Context(), "stream::set", map[string]any{"stream_name": "todos", "group_id": "g", "item_id": id, "data": map[string]any{"title": title}}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	e.signal(t, syscall.SIGTERM)
	if code := e.wait(t, exitTimeout); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	r := runTrine(t, testEnv(), "", append(engineArgs(t, "--config", conf("strict.json", 2)), "--data-dir", data)...)
	for _, want := range []string{`streams: "todos"`, `2 stored items fail version 2`, `"item_id":"a"`, `"item_id":"c"`, "/title: expected number, got string", "nothing was stored"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, stderr %q; want 1 saying %q", r.code, r.stderr, want)
		}
	}
	e = startEngine(t, trineBin, testEnv(), append(engineArgs(t, "--config", conf("object.json", 2)), "--data-dir", data)...)
	w = connectWorker(t, e.grpc)
	out, err := w.Trigger(t.Context(), "engine::streams::schema", map[string]any{"stream_name": "todos"})
	if err != nil || !strings.Contains(string(out), `"current":{"stream_name":"todos","version":2,`) {
		t.Fatalf("schema %s, %v", out, err)
	}
	w.Close()
	e.signal(t, syscall.SIGTERM)
	if code := e.wait(t, exitTimeout); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

// TestEngineFunctionFormatLimits: the --contract-* limits hold for the
// request_format and response_format of function registrations too.
func TestEngineFunctionFormatLimits(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--contract-max-schema-bytes", "100")...)
	w := connectWorker(t, e.grpc)
	ctx := t.Context()
	h := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	big := `{"type":"object","description":"` + strings.Repeat("x", 100) + `"}`
	err := w.RegisterFunction(ctx, "fn::big", h, trine.WithRequestFormat(big))
	refusedWith(t, err, "invalid_argument", "over the limit of 100")
	if err := w.RegisterFunction(ctx, "fn::small", h, trine.WithRequestFormat(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	_, err = w.Trigger(ctx, "fn::small", 1)
	refusedWith(t, err, "invalid_argument", "(root): expected object, got number")
}

// GET /schemas and GET /schemas/{stream} on the http listener answer the
// contracts as JSON Schema documents, to the callers the stream listener
// admits: without a token 401, a token whose streams claim does not name
// the stream 403 (and the list leaves it out), a stream without a
// contract 404.
func TestHTTPSchemas(t *testing.T) {
	t.Parallel()
	secret := writeTemp(t, "0123456789abcdef0123456789abcdef\n")
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--stream-jwt-hmac-secret-file", secret)...)
	r := runTrine(t, testEnv(), "", "token", "--secret-file", secret, "--sub", "alice", "--streams", "todos/*,plain", "--ttl", "10m")
	if r.code != 0 {
		t.Fatalf("trine token: %d %s", r.code, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, d := range []map[string]any{
		{"stream_name": "todos", "version": 1, "item_schema": json.RawMessage(contractTodo)},
		{"stream_name": "todos", "version": 2, "item_schema": json.RawMessage(contractTodo), "event_schemas": map[string]any{"typing": json.RawMessage(`{"type":"object"}`)}, "compatibility": "NONE"},
		{"stream_name": "secret", "version": 1, "item_schema": json.RawMessage(`true`)},
	} {
		if _, err := w.Trigger(ctx, "stream::define", d); err != nil {
			t.Fatal(err)
		}
	}
	for path, want := range map[string]int{
		"/schemas": 401, "/schemas/todos": 401, "/schemas/todos?token=bad": 401,
		"/schemas/secret?token=" + tok: 403, "/schemas/nothing?token=" + tok: 403, "/schemas/plain?token=" + tok: 404,
	} {
		if code, body := get(t, e.http+path); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}
	code, body := get(t, e.http+"/schemas/todos?token="+tok)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &doc); code != 200 || err != nil {
		t.Fatalf("GET /schemas/todos: %d %s", code, body)
	}
	for k, want := range map[string]string{"type": `"object"`, "x-trine-stream": `"todos"`, "x-trine-version": `2`, "x-trine-compatibility": `"NONE"`, "x-trine-events": `{"typing":{"type":"object"}}`} {
		if string(doc[k]) != want {
			t.Errorf("GET /schemas/todos: %s is %s, want %s (%s)", k, doc[k], want, body)
		}
	}
	code, body = get(t, e.http+"/schemas?token="+tok)
	var all struct {
		Streams map[string]map[string]json.RawMessage `json:"streams"`
	}
	if err := json.Unmarshal([]byte(body), &all); code != 200 || err != nil || len(all.Streams) != 1 || string(all.Streams["todos"]["x-trine-version"]) != "2" {
		t.Fatalf("GET /schemas: %d %s", code, body)
	}
}

// TestRefusalFlags: --contract-refusals-per-stream bounds the refusals
// engine::streams::refusals lists, which name the Go worker that tried
// and its transport.
func TestRefusalFlags(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--contract-refusals-per-stream", "2", "--contract-refusals-stream-bytes", "10000")...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := w.Trigger(ctx, "stream::define", map[string]any{"stream_name": "todos", "version": 1, "item_schema": json.RawMessage(contractTodo)}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		_, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "todos", "group_id": "g", "item_id": id, "data": map[string]any{"title": 1}})
		refusedWith(t, err, "invalid_argument", "/title: expected string, got number")
	}
	out, err := w.Trigger(ctx, "engine::streams::refusals", map[string]any{"stream_name": "todos"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Refusals []struct {
			Item   string `json:"item_id"`
			Caller struct{ Name, Transport string }
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Refusals) != 2 || got.Refusals[0].Item != "c" || got.Refusals[1].Item != "b" ||
		got.Refusals[0].Caller.Name != "streams-test" || got.Refusals[0].Caller.Transport != "grpc" ||
		!strings.Contains(string(out), `"dropped":1`) || !strings.Contains(string(out), `"max_per_stream":2,"max_stream_bytes":10000`) {
		t.Fatalf("engine::streams::refusals = %s, want c then b by streams-test over grpc, 1 dropped, bounds 2 and 10000", out)
	}
}
