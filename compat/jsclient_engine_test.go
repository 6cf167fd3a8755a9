package compat_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestJSClientEngineRestart kills the engine itself (SIGKILL) mid-stream,
// with a file store, and starts it again on the same addresses: a Node
// client following a group through the engine's own stream listener
// resumes with no gap and no duplicate, or with a typed resync when the
// engine's history did not survive, and ends with the store's state; no
// change is lost silently (clients/js/tests/engine-restart.mjs).
func TestJSClientEngineRestart(t *testing.T) {
	node := nodeBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	buildJSClient(t, ctx, node)

	e := &gatewayProc{t: t, bin: buildTrine(t), line: listening,
		args: []string{"engine", "--nats-addr", "off", "--store", "file", "--data-dir", filepath.Join(t.TempDir(), "data")},
		// listening's submatches: grpc, http, stream, iii
		flags: []string{"--grpc-addr", "--http-addr", "--stream-addr", "--iii-addr"}}
	t.Cleanup(e.kill)
	must(t, e.start("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"))
	addrs := e.addrs
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/engine/restart" {
			http.NotFound(w, r)
			return
		}
		e.kill()
		if err := e.start(addrs...); err != nil {
			t.Error(err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	defer control.Close()

	args := []string{"--test", "--test-force-exit"}
	if nodeMajor(t, node) < 22 {
		args = append(args, "--experimental-websocket")
	}
	cmd := exec.CommandContext(ctx, node, append(args, "tests/engine-restart.mjs")...)
	cmd.Dir = jsClient
	cmd.Env = append(os.Environ(), "TRINE_ENGINE_STREAM=ws://"+addrs[2], "TRINE_III=ws://"+addrs[3], "TRINE_CONTROL="+control.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test tests/engine-restart.mjs: %v\n%s", err, out)
	}
	t.Logf("node --test tests/engine-restart.mjs:\n%s", lastLines(string(out), 12))
}
