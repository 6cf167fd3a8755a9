package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tracing/otlptest"
	trine "github.com/trinehq/trine/worker-sdk"
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

// readmeSection is the text of the README's section titled heading (its
// "#" line included) up to the next heading of the same or a higher level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("the README has no %q", heading)
	}
	s = s[i+1:]
	level := strings.Repeat("#", strings.Index(heading, " "))
	for j := len(heading); ; {
		k := strings.Index(s[j:], "\n#")
		if k < 0 {
			return s
		}
		j += k + 1
		if end := strings.IndexByte(s[j:], ' '); end > 0 && end <= len(level) && strings.Trim(s[j:j+end], "#") == "" {
			return s[:j]
		}
	}
}

// TestReadmeMetricFamilies: every metric of the generated table in
// docs/cli.md belongs to a family the README's Operations section names
// (a name, or a prefix ending in *), and every name it gives exists.
func TestReadmeMetricFamilies(t *testing.T) {
	t.Parallel()
	ops := readmeSection(t, "### Metrics")
	ref, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	metrics := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(trine_[a-z_]+)`").FindAllStringSubmatch(string(ref), -1) {
		metrics[m[1]] = true
	}
	if len(metrics) < 10 {
		t.Fatalf("docs/cli.md lists %d metrics", len(metrics))
	}
	var prefixes []string
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`(trine_[a-z_]+)(\\*?)`").FindAllStringSubmatch(ops, -1) {
		if m[2] == "*" {
			prefixes = append(prefixes, m[1])
			continue
		}
		named[m[1]] = true
		if !metrics[m[1]] {
			t.Errorf("the README names %s, which docs/cli.md does not list", m[1])
		}
	}
	for m := range metrics {
		covered := named[m]
		for _, p := range prefixes {
			covered = covered || strings.HasPrefix(m, p)
		}
		if !covered {
			t.Errorf("%s is in no family of the README's Operations section", m)
		}
	}
}

// TestReadmeTrace follows the README's "See a trace" steps against a
// real engine (its addresses changed to the test's, and an OTLP receiver
// for Jaeger): a subscriber as the curl line makes it, then the write
// the README shows, with a stream trigger on the stream; every span the
// README names reaches the collector, each the child of the one it
// follows.
func TestReadmeTrace(t *testing.T) {
	t.Parallel()
	sec := readmeSection(t, "### See a trace")
	if !strings.Contains(sec, "--otel-endpoint http://127.0.0.1:4318") || !strings.Contains(sec, "-p 4318:4318") {
		t.Fatal("the README's steps do not export to the collector's OTLP/HTTP port")
	}
	curl := regexp.MustCompile(`curl -sN -H '([^:]+): ([^']+)' http://127\.0\.0\.1:3112(/\S+) &`).FindStringSubmatch(sec)
	write := regexp.MustCompile(`go run ./cmd/trine trigger (\S+) '([^']+)'`).FindStringSubmatch(sec)
	if curl == nil || write == nil {
		t.Fatal("the README's steps do not subscribe with curl and write with trine trigger")
	}
	col := otlptest.NewCollector(t)
	e := startEngine(t, trineBin, tracedEnv(), engineArgs(t, "--otel-endpoint", col.URL)...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	fired := make(chan struct{}, 1)
	if err := w.RegisterFunction(ctx, "t::on", func(context.Context, json.RawMessage) (any, error) { fired <- struct{}{}; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(ctx, trine.Trigger{ID: "on-chat", Type: "stream", FunctionID: "t::on", Config: json.RawMessage(`{"stream_name":"chat"}`)}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.stream+curl[3], nil)
	req.Header.Set(curl[1], curl[2])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events := bufio.NewReader(res.Body)
	next := func() string {
		t.Helper()
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatalf("the subscriber's stream: %v", err)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				return data
			}
		}
	}
	if f := next(); !strings.Contains(f, `"type":"sync"`) {
		t.Fatalf("first frame %s, want the sync", f)
	}
	if r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, write[1], write[2]); r.code != 0 {
		t.Fatalf("trine trigger: exit %d, %s", r.code, r.stderr)
	}
	if f := next(); !strings.Contains(f, `"type":"create"`) {
		t.Fatalf("frame %s, want the create", f)
	}
	select {
	case <-fired:
	case <-ctx.Done():
		t.Fatal("the stream trigger did not fire")
	}
	steps := regexp.MustCompile("`([a-z:]+(?: chat)?)` \\(").FindAllStringSubmatch(sec, -1)
	var names []string
	for _, s := range steps {
		names = append(names, s[1])
	}
	if strings.Join(names, " > ") != "stream::set > commit chat > send chat > process chat" || !strings.Contains(sec, "`trigger chat`") {
		t.Fatalf("the README's trace is %v (and trigger chat), which this test does not check", names)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the README's spans at the collector", func() bool {
		for _, n := range append(names, "trigger chat") {
			if len(col.Named(n)) != 1 {
				return false
			}
		}
		return true
	}))
	for i, n := range append(names[1:], "trigger chat") {
		parent := names[i]
		if n == "trigger chat" {
			parent = "commit chat"
		}
		c, p := col.Named(n)[0], col.Named(parent)[0]
		if !bytes.Equal(c.GetTraceId(), p.GetTraceId()) || !bytes.Equal(c.GetParentSpanId(), p.GetSpanId()) {
			t.Errorf("%s is not a child of %s", n, parent)
		}
	}
}
