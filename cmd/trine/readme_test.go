package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
)

// TestReadmeQuickStart builds the README's Go worker as written (only its
// engine address changed to the test engine's), runs it, and makes the
// calls the README shows: math::add answers 3, math::mul its product.
func TestReadmeQuickStart(t *testing.T) {
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) != 2 {
		t.Fatalf("the README has %d Go blocks, want the worker and the contract", len(blocks))
	}
	src := blocks[0][1]
	const readmeAddr = `"127.0.0.1:49134"`
	if !strings.Contains(src, readmeAddr) {
		t.Fatalf("the README's worker does not dial %s", readmeAddr)
	}

	e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
	// The health check's answer as the README prints it, before any worker.
	want := regexp.MustCompile(`"workers":0,"functions":(\d+)`).FindStringSubmatch(string(doc))
	if want == nil {
		t.Fatal("the README shows no engine::health::check answer")
	}
	r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check")
	if !strings.Contains(r.stdout, want[0]) {
		t.Errorf("engine::health::check = %s; the README says %s", r.stdout, want[0])
	}
	// A directory starting with "_" inside the module: it builds with the
	// module's go.mod and go.sum, and ./... never sees it.
	dir, err := os.MkdirTemp("../..", "_readme")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(strings.Replace(src, readmeAddr, `"`+e.grpc+`"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's worker does not build: %v\n%s", err, out)
	}
	w := startProc(t, bin, os.Environ(), "")
	defer func() {
		w.signal(t, syscall.SIGTERM)
		if code := w.wait(t, exitTimeout); code != 0 {
			t.Errorf("the worker exited %d on SIGTERM; stderr:\n%s", code, w.stderr)
		}
	}()

	poll.CheckFor(t, startTimeout, poll.Holds("math::mul registered", func() bool {
		r = runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "math::mul", `{"a":6,"b":7}`)
		return r.code == 0
	}))
	if got := strings.TrimSpace(r.stdout); got != `{"product":42}` {
		t.Errorf("math::mul = %q", got)
	}
	// The README's own call.
	r = runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "math::add", `{"a":1,"b":2}`)
	if got := strings.TrimSpace(r.stdout); r.code != 0 || got != "3" {
		t.Errorf("math::add = %q (exit %d, %s), the README says 3", got, r.code, r.stderr)
	}
	r = runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "math::add", `"not an object"`)
	if r.code != 1 || !strings.Contains(r.stderr, `"code":"invalid_argument"`) {
		t.Errorf("math::add with a bad payload: exit %d, %s", r.code, r.stderr)
	}
}

// TestReadmeContracts runs the README's contract example as written (only
// its engine address changed): it defines todos from its Go type and
// prints the refusal the README shows; trine codegen ts then writes the
// TodosItem its browser page uses.
func TestReadmeContracts(t *testing.T) {
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) != 2 {
		t.Fatalf("the README has %d Go blocks, want the worker and the contract", len(blocks))
	}
	src := blocks[1][1]
	refusal := regexp.MustCompile("(?s)```\n(trine: invalid_argument: [^\n]*)\n```").FindStringSubmatch(string(doc))
	if refusal == nil {
		t.Fatal("the README shows no refused write")
	}
	e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
	dir, err := os.MkdirTemp("../..", "_readme")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(strings.Replace(src, `"127.0.0.1:49134"`, `"`+e.grpc+`"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, "go", "run", ".")
	run.Dir = dir
	out, err := run.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != refusal[1] {
		t.Fatalf("the README's contract example printed %q (%v), the README says %q", out, err, refusal[1])
	}
	r := runTrine(t, testEnv(), "", "codegen", "ts", "--engine", e.grpc, "--streams", "todos")
	if r.code != 0 || !strings.Contains(r.stdout, "export type TodosItemTodo = { done: boolean; title: string }") {
		t.Fatalf("trine codegen ts: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
}
