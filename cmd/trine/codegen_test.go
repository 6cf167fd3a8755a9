package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

// trine codegen ts writes types for a real engine's contracts that tsc
// compiles against @trine/client: connect<Streams>(url).group('todos', id)
// is typed by the item schema (a $defs reference included), events by
// their schemas and group ids by the stream's pattern; a wrong field type,
// an unknown stream or a group id off the pattern fails to compile.
func TestCodegenTS(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	tsc, _ := filepath.Abs("../../clients/js/node_modules/typescript/bin/tsc")
	if _, serr := os.Stat(tsc); err != nil || serr != nil {
		t.Skip("needs node and clients/js installed (npm ci --prefix clients/js)")
	}
	e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, d := range []map[string]any{
		{"stream_name": "todos", "version": 1, "group_id_pattern": "list-*",
			"item_schema":   json.RawMessage(`{"$ref":"#/$defs/Todo","$defs":{"Todo":{"type":"object","properties":{"title":{"type":"string"},"done":{"type":"boolean"},"tags":{"type":["array","null"],"items":{"type":"string"}},"sub":{"$ref":"#/$defs/Todo"}},"required":["title"],"additionalProperties":false}}}`),
			"event_schemas": map[string]any{"typing": json.RawMessage(`{"type":"object","properties":{"user":{"type":"string"}},"required":["user"]}`)}},
		{"stream_name": "other", "version": 1, "item_schema": json.RawMessage(`{"type":"integer"}`)},
	} {
		if _, err := w.Trigger(ctx, "stream::define", d); err != nil {
			t.Fatal(err)
		}
	}
	h := func(context.Context, json.RawMessage) (any, error) { return map[string]any{"id": "x"}, nil }
	if err := w.RegisterFunction(ctx, "todo::add", h, trine.WithRequestFormat(`{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}`),
		trine.WithResponseFormat(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if r := runTrine(t, testEnv(), "", "codegen", "ts", "--engine", e.grpc, "--streams", "todos", "-o", filepath.Join(dir, "streams.ts")); r.code != 0 {
		t.Fatalf("trine codegen ts: exit %d %s", r.code, r.stderr)
	}
	if r := runTrine(t, testEnv(), "", "codegen", "ts", "--engine", e.grpc, "--streams", "todos,nope"); r.code != 1 || !strings.Contains(r.stderr, `"nope" has no contract`) {
		t.Fatalf("codegen of a stream without a contract: exit %d %s", r.code, r.stderr)
	}
	src, _ := filepath.Abs("../../clients/js/src/index.ts")
	tsconfig := `{"compilerOptions":{"target":"es2022","module":"esnext","moduleResolution":"bundler","lib":["es2022","dom"],"strict":true,"noEmit":true,"skipLibCheck":true,"types":[],
		"paths":{"@trine/client":[` + jsonString(src) + `]}},"files":["app.ts"]}`
	if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), []byte(tsconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	compile := func(body string) (string, bool) {
		app := "import { connect } from '@trine/client'\nimport type { Streams, Functions, TodosItem } from './streams'\n" +
			"const c = connect<Streams, Functions>('ws://127.0.0.1:1')\nconst g = c.group('todos', 'list-1')\n" + body + "\nc.close()\n"
		if err := os.WriteFile(filepath.Join(dir, "app.ts"), []byte(app), 0o644); err != nil {
			t.Fatal(err)
		}
		// tsc takes seconds on a loaded machine: only the test's own
		// deadline bounds it, and a compiler that did not run to the end
		// fails the test instead of passing for a wrong file.
		out, err := exec.CommandContext(t.Context(), node, tsc, "-p", dir).CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) || exit != nil && !exit.Exited() {
			t.Fatalf("tsc did not finish: %v\n%s", err, out)
		}
		return string(out), err == nil
	}
	good := `const t: TodosItem | undefined = g.items.get('a')
const title: string = t!.title
const deeper: string | undefined = t?.sub?.title
const tags: string[] | null | undefined = t?.tags
g.on('typing', (d) => { const u: string = d.user; void u })
const id: Promise<string> = c.call('todo::add', { title: 'milk' }).then((r) => r.id)
void title; void deeper; void tags; void id`
	if out, ok := compile(good); !ok {
		t.Fatalf("the generated types do not compile:\n%s", out)
	}
	for name, body := range map[string]string{
		"a wrong field type":         `const n: number = g.items.get('a')!.title; void n`,
		"an unknown stream":          `c.group('nope', 'x')`,
		"a group id off the pattern": `c.group('todos', 'inbox')`,
		"an undeclared event":        `g.on('nope', () => {})`,
		"a wrong request field type": `void c.call('todo::add', { title: 1 })`,
		"a wrong response field":     `void c.call('todo::add', { title: 'x' }).then((r) => { const n: number = r.id; void n })`,
	} {
		if out, ok := compile(body); ok || !strings.Contains(out, "error TS") {
			t.Errorf("%s compiles:\n%s", name, out)
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
