// Package compat runs clients against a real `trine engine`: the npm
// package iii-sdk (see iii-node/), headless Chromium (browser/), and this
// project's own browser client, @trine/client (../clients/js).
package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/enginetest"
	trine "github.com/trinehq/trine/worker-sdk"
)

var listening = regexp.MustCompile(`(?m)^trine engine \S+ listening: grpc=(\S+) http=(\S+) stream=(\S+) iii=(\S+) nats=(\S+)((?: [a-z/0-9-]+=\S+)*)$`)

// TestIIINodeSDK runs compat/iii-node/test.mjs (node:test, iii-sdk pinned
// in package-lock.json) against a real engine, with a Go gRPC worker
// serving go::echo, go::call, go::bind, go::unbind, go::cut and go::fail. It needs node and npm
// (`make test` installs the package with npm ci first).
// compatQueues are the named queues test.mjs enqueues on.
const compatQueues = `queues:
  compat:
    max_retries: 2
    backoff_ms: 50
  compat-fifo:
    type: fifo
    message_group_field: account
    backoff_ms: 50
`

func TestIIINodeSDK(t *testing.T) {
	node := nodeWithSDK(t)
	conf := filepath.Join(t.TempDir(), "trine.yaml")
	must(t, os.WriteFile(conf, []byte(compatQueues), 0o600))
	// An HTTP endpoint for the HTTP-invoked function test.mjs registers:
	// it answers {got, function, signed} for what the engine sent.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `{"error":{"code":"bad_body","message":"not JSON"}}`, http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"got": body, "function": r.Header.Get("X-Iii-Function-Path"), "method": r.Method})
	}))
	defer hook.Close()
	grpcAddr, httpAddr, iiiAddr := startEngine(t, buildTrine(t), "--config", conf, "--http-invoke-allow-http", "on", "--http-invoke-allow-private", "on")
	// The Node worker reaches the engine through a proxy that go::cut
	// cuts, to see the SDK reconnect, reattach and replay.
	proxy := enginetest.NewProxy(t, iiiAddr)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := trine.RegisterWorker(grpcAddr, trine.WithName("go-compat"))
	defer w.Close()
	must(t, w.RegisterFunction(ctx, "go::echo", func(_ context.Context, p json.RawMessage) (any, error) {
		return map[string]json.RawMessage{"echo": p}, nil
	}))
	must(t, w.RegisterFunction(ctx, "go::call", func(ctx context.Context, p json.RawMessage) (any, error) {
		var in struct {
			FunctionID string          `json:"function_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(p, &in); err != nil {
			return nil, err
		}
		return w.Trigger(ctx, in.FunctionID, in.Payload)
	}))
	// go::bind and go::unbind register and remove a trigger owned by this
	// Go worker: {id, type, function_id, config}.
	must(t, w.RegisterFunction(ctx, "go::bind", func(_ context.Context, p json.RawMessage) (any, error) {
		var tr struct {
			ID         string          `json:"id"`
			Type       string          `json:"type"`
			FunctionID string          `json:"function_id"`
			Config     json.RawMessage `json:"config"`
		}
		if err := json.Unmarshal(p, &tr); err != nil {
			return nil, err
		}
		return map[string]string{"id": tr.ID}, w.RegisterTrigger(ctx, trine.Trigger{ID: tr.ID, Type: tr.Type, FunctionID: tr.FunctionID, Config: tr.Config})
	}))
	must(t, w.RegisterFunction(ctx, "go::unbind", func(_ context.Context, p json.RawMessage) (any, error) {
		var tr struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(p, &tr); err != nil {
			return nil, err
		}
		return nil, w.UnregisterTrigger(ctx, tr.ID)
	}))
	must(t, w.RegisterFunction(ctx, "go::cut", func(context.Context, json.RawMessage) (any, error) {
		time.AfterFunc(100*time.Millisecond, proxy.Cut) // after this answer has left
		return map[string]bool{"cut": true}, nil
	}))
	must(t, w.RegisterFunction(ctx, "go::fail", func(context.Context, json.RawMessage) (any, error) {
		return nil, &trine.Error{Code: "forbidden", Message: "go::fail always refuses"}
	}))
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1", "--test-force-exit", "test.mjs")
	cmd.Dir = "iii-node"
	cmd.Env = append(os.Environ(), "III_URL=ws://"+proxy.Addr, "III_HTTP_URL=http://"+httpAddr, "III_HOOK_URL="+hook.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test.mjs: %v\n%s", err, out)
	}
	t.Logf("node --test test.mjs:\n%s", lastLines(string(out), 12))
}

// startEngine runs `trine engine` on free loopback ports until the test
// ends, and returns its gRPC, HTTP and iii addresses.
func startEngine(t *testing.T, bin string, extra ...string) (grpcAddr, httpAddr, iiiAddr string) {
	a := startEngineWith(t, bin, extra...)
	return a.grpc, a.http, a.iii
}

// engineAddrs are the addresses on an engine's start line (nats as printed:
// "embedded,ADDR", "embedded" or a URL); rest holds its further fields
// (" iii/1=ADDR" for extra listeners).
type engineAddrs struct{ grpc, http, stream, iii, nats, rest string }

// startEngineWith is startEngine with extra arguments.
func startEngineWith(t *testing.T, bin string, extra ...string) engineAddrs {
	t.Helper()
	args := append([]string{"engine", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0",
		"--iii-addr", "127.0.0.1:0", "--nats-addr", "off", "--store", "memory", "--data-dir", filepath.Join(t.TempDir(), "data")}, extra...)
	cmd := exec.Command(bin, args...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("engine exit: %v\nstderr:\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGQUIT) // Go prints every goroutine's stack
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
			}
			t.Errorf("engine did not exit within 30s of SIGTERM; stderr:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := listening.FindStringSubmatch(stdout.String()); m != nil {
			return engineAddrs{grpc: m[1], http: m[2], stream: m[3], iii: m[4], nats: m[5], rest: m[6]}
		}
		select {
		case err := <-exited:
			t.Fatalf("engine exited before listening: %v\nstderr:\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listening line within 30s\nstderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildTrine builds ./cmd/trine into the test's temporary directory.
func buildTrine(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trine")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/trine").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// nodeWithSDK returns the node binary, failing the test when node or the
// pinned iii-sdk is missing.
func nodeWithSDK(t *testing.T) string {
	t.Helper()
	node := nodeBin(t)
	if _, err := os.Stat(filepath.Join("iii-node", "node_modules", "iii-sdk", "package.json")); err != nil {
		t.Fatal("iii-sdk is not installed: run `npm ci --prefix compat/iii-node` (make test does)")
	}
	return node
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
