package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestConsoleInChromium opens every page of the console (/console on the
// engine's HTTP listener) in the OS's headless Chromium
// (compat/browser/console.mjs) against an engine with a worker, a cron
// trigger, a trigger waiting for its provider and a named queue:
//   - each page loads with no console error and shows what the engine
//     has; an orphaned join guard is released from the Triggers page;
//   - each shows a write (a new function, a new worker, a new trigger, a
//     stream item, a dead letter, a cron fire, calls) within 1 s;
//   - a call from the Functions page returns its result, and the Streams
//     page's item editor shows a conflict when the item changed since; the
//     group's head shows its history (stream::group_info) and a member
//     that joined with presence (stream::presence);
//   - on a second engine whose iii listener admits by an auth function
//     reading the console user's token, a call that token may not make is
//     refused (forbidden) and one it may make succeeds;
//   - on a third engine whose HTTP listener is bound to every address,
//     the console is refused (401) to a browser without a console token.
//
// CONSOLE_SCREENSHOTS=dir saves a screenshot of each page there.
func TestConsoleInChromium(t *testing.T) {
	chromium := chromiumWithPuppeteer(t)
	node := nodeBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildTrine(t)

	cfg := filepath.Join(t.TempDir(), "trine.yaml")
	must(t, os.WriteFile(cfg, []byte("queues:\n  jobs:\n    max_retries: 1\n    backoff_ms: 10\n"), 0o644))
	a := startEngineWith(t, bin, "--config", cfg)
	w := trine.RegisterWorker(a.grpc, trine.WithName("console-test"))
	defer w.Close()
	must(t, w.Connect(ctx))
	echo := func(_ context.Context, p json.RawMessage) (any, error) { return p, nil }
	must(t, w.RegisterFunction(ctx, "test::echo", echo))
	must(t, w.RegisterFunction(ctx, "test::fail", func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("always fails") }))
	must(t, w.RegisterTrigger(ctx, trine.Trigger{ID: "tick", Type: "cron", FunctionID: "test::echo", Config: map[string]string{"expression": "* * * * * *"}}))
	// A trigger whose type's provider left: waiting_for_provider.
	prov := trine.RegisterWorker(a.grpc, trine.WithName("provider"))
	must(t, prov.Connect(ctx))
	must(t, prov.RegisterTriggerType(ctx, "test:later", "comes and goes", nopTriggers{}))
	must(t, w.RegisterTrigger(ctx, trine.Trigger{ID: "early", Type: "test:later", FunctionID: "test::echo", Config: map[string]any{}}))
	prov.Close()
	// A join guard whose worker left: orphaned, still denying joins.
	guard := trine.RegisterWorker(a.grpc, trine.WithName("guard"))
	must(t, guard.Connect(ctx))
	must(t, guard.RegisterFunction(ctx, "guard::deny", func(context.Context, json.RawMessage) (any, error) { return map[string]bool{"unauthorized": true}, nil }))
	must(t, guard.RegisterTrigger(ctx, trine.Trigger{ID: "gate", Type: "stream:join", FunctionID: "guard::deny", Config: map[string]string{"stream_name": "vault"}}))
	guard.Close()

	// Writes the page cannot make itself: a function, a trigger, a worker.
	var late *trine.Worker
	defer func() {
		if late != nil {
			late.Close()
		}
	}()
	control := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var err error
		switch r.URL.Query().Get("do") {
		case "function":
			err = w.RegisterFunction(r.Context(), "test::fresh", echo)
		case "trigger":
			err = w.RegisterTrigger(r.Context(), trine.Trigger{ID: "tock", Type: "cron", FunctionID: "test::fresh", Config: map[string]string{"expression": "0 0 * * * *"}})
		case "worker":
			late = trine.RegisterWorker(a.grpc, trine.WithName("late-worker"))
			if err = late.Connect(r.Context()); err == nil {
				err = late.RegisterFunction(r.Context(), "late::hello", echo)
			}
		default:
			http.NotFound(rw, r)
			return
		}
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
		}
	}))
	defer control.Close()

	// The second engine: its iii listener asks test::auth, which reads
	// the token the console hands on.
	b := startEngineWith(t, bin, "--iii-auth-function", "test::auth", "--iii-expose-functions", "engine::*,stream::*")
	wb := trine.RegisterWorker(b.grpc, trine.WithName("auth"))
	defer wb.Close()
	must(t, wb.Connect(ctx))
	must(t, wb.RegisterFunction(ctx, "test::secret", func(context.Context, json.RawMessage) (any, error) { return "the secret", nil }))
	must(t, wb.RegisterFunction(ctx, "test::auth", func(_ context.Context, p json.RawMessage) (any, error) {
		var in struct {
			QueryParams map[string][]string `json:"query_params"`
		}
		if err := json.Unmarshal(p, &in); err != nil {
			return nil, err
		}
		switch tok := in.QueryParams["token"]; {
		case len(tok) == 1 && tok[0] == "ops":
			return map[string]any{"allowed_functions": []string{"test::secret"}, "context": map[string]string{"user": "ops"}}, nil
		case len(tok) == 1 && tok[0] == "viewer":
			return map[string]any{"context": map[string]string{"user": "viewer"}}, nil
		}
		return nil, fmt.Errorf("unknown token")
	}))

	// The third: its HTTP listener on every address, where the console
	// needs a console token, which the browser does not bring.
	c := startEngineWith(t, bin, "--http-addr", "0.0.0.0:0")
	_, cport, err := net.SplitHostPort(c.http)
	must(t, err)

	cmd := exec.CommandContext(ctx, node, "console.mjs")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "CONSOLE_URL=http://"+a.http+"/console/", "STREAM_URL=ws://"+a.stream, "CONTROL="+control.URL,
		"POLICY_URL=http://"+b.http+"/console/", "OPEN_URL=http://127.0.0.1:"+cport+"/console/", "SCREENSHOTS="+os.Getenv("CONSOLE_SCREENSHOTS"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node console.mjs: %v\n%s", err, out)
	}
	t.Logf("node console.mjs:\n%s", out)
}

// nopTriggers is a trigger type's provider that accepts every trigger.
type nopTriggers struct{}

func (nopTriggers) RegisterTrigger(context.Context, trine.Trigger) error   { return nil }
func (nopTriggers) UnregisterTrigger(context.Context, trine.Trigger) error { return nil }

// TestConsoleTypechecks: the console's TypeScript (console/web) passes
// tsc --strict against @trine/client's sources, with the TypeScript that
// clients/js pins (esbuild, which bundles it, does not check types).
func TestConsoleTypechecks(t *testing.T) {
	node := nodeBin(t)
	tsc := filepath.Join(jsClient, "node_modules", "typescript", "bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		t.Fatal("clients/js is not installed: run `npm ci --prefix clients/js` (make test does)")
	}
	if out, err := exec.Command(node, tsc, "-p", "../console/web").CombinedOutput(); err != nil {
		t.Fatalf("tsc -p console/web: %v\n%s", err, out)
	}
}
