package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

func TestEngineServes(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "nested", "data")
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--data-dir", dataDir)...)

	if e.version != "dev" {
		t.Errorf("listening line version = %q, want dev", e.version)
	}
	for _, addr := range []string{e.grpc, strings.TrimPrefix(e.http, "http://")} {
		if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
			t.Errorf("listening address %q, want the bound 127.0.0.1 port", addr)
		}
	}
	if fi, err := os.Stat(dataDir); err != nil || !fi.IsDir() {
		t.Errorf("data dir %s: %v, want it created", dataDir, err)
	}
	for path, want := range map[string]string{"/healthz": `{"status":"ok"}`, "/readyz": `{"status":"ok","cron":"up","presence":"up","queues":"up"}`} {
		if code, body := get(t, e.http+path); code != 200 || body != want+"\n" {
			t.Errorf("GET %s = %d %q, want 200 %s", path, code, body, want)
		}
	}
	if code, body := get(t, e.http+"/metrics"); code != 200 || !strings.Contains(body, "trine_workers_connected 0") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics = %d, missing trine or Go metrics:\n%.500s", code, body)
	}
	if code, _ := get(t, e.http+"/nope"); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

// TestEngineSignals: an idle engine exits 0 promptly on SIGINT or SIGTERM.
func TestEngineSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
			start := time.Now()
			e.signal(t, sig)
			if code := e.wait(t, exitTimeout); code != 0 {
				t.Fatalf("exit code after %v = %d, want 0; stderr:\n%s", sig, code, e.stderr)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("engine took %v to exit on %v, want it prompt", el, sig)
			}
			if !strings.Contains(e.stderr.String(), "engine exited") {
				t.Errorf("stderr lacks the engine's shutdown log:\n%s", e.stderr)
			}
		})
	}
}

// TestEngineDrainsOnSIGTERM: after SIGTERM the engine reports draining on
// /readyz, refuses new calls with unavailable, lets the call in flight
// finish, then exits 0.
func TestEngineDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--shutdown-grace", "1m")...)
	w := trine.RegisterWorker(e.grpc, trine.WithName("drain-test"), trine.WithCloseTimeout(time.Second))
	defer w.Close()
	if err := w.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // also when the test fails early
	err := w.RegisterFunction(t.Context(), "test::block", func(ctx context.Context, _ json.RawMessage) (any, error) {
		once.Do(func() { close(started) })
		select {
		case <-release:
			return "finished", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	call := startProc(t, trineBin, testEnv(), "", "trigger", "--engine", e.grpc, "test::block")
	select {
	case <-started:
	case <-call.done:
		t.Fatalf("trigger exited with %d before the function started; stderr: %s", call.code, call.stderr)
	}

	e.signal(t, syscall.SIGTERM)
	poll.CheckFor(t, startTimeout, poll.Holds("/readyz to report draining", func() bool {
		code, body := get(t, e.http+"/readyz")
		return code == 503 && strings.HasPrefix(body, `{"status":"draining",`)
	}))
	if code, _ := get(t, e.http+"/healthz"); code != 200 {
		t.Errorf("GET /healthz while draining = %d, want 200", code)
	}
	r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check")
	if f := decodeFailure(t, r); r.code != 1 || f.Code != "unavailable" {
		t.Errorf("trigger while draining = %d %q, want exit 1 and code unavailable", r.code, r.stderr)
	}

	unblock()
	if code := call.wait(t, exitTimeout); code != 0 || call.stdout.String() != "\"finished\"\n" {
		t.Errorf("call in flight across SIGTERM = exit %d, stdout %q, stderr %q; want 0 and \"finished\"", code, call.stdout, call.stderr)
	}
	if code := e.wait(t, exitTimeout); code != 0 {
		t.Errorf("engine exit code = %d, want 0; stderr:\n%s", code, e.stderr)
	}
}

// TestEngineDefaultTimeout: --default-timeout bounds calls that set none.
func TestEngineDefaultTimeout(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--default-timeout", "300ms")...)
	w := trine.RegisterWorker(e.grpc, trine.WithName("timeout-test"), trine.WithCloseTimeout(time.Second))
	defer w.Close()
	if err := w.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := w.RegisterFunction(t.Context(), "test::hang", func(ctx context.Context, _ json.RawMessage) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "--timeout", "0", "test::hang")
	if f := decodeFailure(t, r); r.code != 1 || f.Code != "deadline_exceeded" {
		t.Errorf("trigger of a hanging function = %d %q, want exit 1 and deadline_exceeded", r.code, r.stderr)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("call with a 300ms default timeout took %v", el)
	}
}

func TestEnginePortInUse(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"grpc", "http"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			busy := busyAddr(t)
			r := runTrine(t, testEnv(), "", engineArgs(t, "--"+name+"-addr", busy)...)
			want := fmt.Sprintf("trine: listen %s %s: address already in use; change --%s-addr\n", name, busy, name)
			if r.code != 1 || r.stderr != want {
				t.Errorf("engine on a busy %s port = exit %d, stderr %q; want 1 and %q", name, r.code, r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
	t.Run("gateway", func(t *testing.T) {
		t.Parallel()
		busy := busyAddr(t)
		r := runTrine(t, testEnv(), "", "gateway", "--stream-addr", "127.0.0.1:0", "--http-addr", busy)
		if want := "listen http " + busy + ": address already in use; change --http-addr\n"; r.code != 1 || !strings.HasSuffix(r.stderr, want) {
			t.Errorf("gateway on a busy http port = exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
		}
	})
}

// TestEngineMaxMessageBytes: --max-message-bytes limits what the engine
// accepts, and the CLI reports it as message_too_large.
func TestEngineMaxMessageBytes(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--max-message-bytes", "1024")...)
	big := prefixPayload(2048)
	r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::functions::list", big)
	if f := decodeFailure(t, r); r.code != 1 || f.Code != "message_too_large" {
		t.Errorf("oversize trigger = %d %q, want exit 1 and message_too_large", r.code, r.stderr)
	}
	small := prefixPayload(512)
	if r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::functions::list", small); r.code != 0 {
		t.Errorf("trigger under the limit = %d %q, want 0", r.code, r.stderr)
	}
}

// TestEngineEnvironment: every setting can come from TRINE_* variables.
func TestEngineEnvironment(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "env-data")
	e := startEngine(t, trineBin, testEnv(
		"TRINE_GRPC_ADDR=127.0.0.1:0",
		"TRINE_HTTP_ADDR=127.0.0.1:0",
		"TRINE_STREAM_ADDR=127.0.0.1:0",
		"TRINE_NATS_ADDR=off",
		"TRINE_DATA_DIR="+dataDir,
		"TRINE_MAX_MESSAGE_BYTES=1024",
		"TRINE_LOG_FORMAT=json",
		"TRINE_LOG_LEVEL=debug",
	), "engine")
	if strings.HasSuffix(e.grpc, ":49134") || strings.HasSuffix(e.http, ":3111") {
		t.Errorf("engine listens on grpc=%s http=%s, the defaults, not TRINE_*_ADDR", e.grpc, e.http)
	}
	if _, err := os.Stat(dataDir); err != nil {
		t.Errorf("TRINE_DATA_DIR not created: %v", err)
	}
	big := prefixPayload(2048)
	if r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check", big); decodeFailure(t, r).Code != "message_too_large" {
		t.Errorf("oversize trigger = %d %q, want message_too_large from TRINE_MAX_MESSAGE_BYTES", r.code, r.stderr)
	}
	poll.CheckFor(t, startTimeout, poll.Holds("a JSON log line", func() bool { return strings.Contains(e.stderr.String(), "\n") }))
	first, _, _ := strings.Cut(e.stderr.String(), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil || rec["msg"] == nil {
		t.Errorf("first log line %q is not a JSON record (TRINE_LOG_FORMAT=json): %v", first, err)
	}
}

// TestEngineConfigFile: the YAML file is honoured after ${VAR} and
// ${VAR:default} expansion, and ranks below the environment and flags.
func TestEngineConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "trine.yaml")
	yaml := `# the engine's test configuration
grpc_addr: ${TRINE_TEST_GRPC_ADDR:127.0.0.1:0}
http_addr: "${TEST_HTTP_ADDR}"
stream_addr: 127.0.0.1:0
nats_addr: "off"
data_dir: ${TEST_DIR}/yaml-data
max_message_bytes: 1024
log_format: json
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("Expanded", func(t *testing.T) {
		t.Parallel()
		e := startEngine(t, trineBin, testEnv("TEST_HTTP_ADDR=127.0.0.1:0", "TEST_DIR="+dir), "engine", "--config", cfg)
		if _, err := os.Stat(filepath.Join(dir, "yaml-data")); err != nil {
			t.Errorf("data_dir ${TEST_DIR}/yaml-data not created: %v", err)
		}
		big := prefixPayload(2048)
		if r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check", big); decodeFailure(t, r).Code != "message_too_large" {
			t.Errorf("oversize trigger = %d %q, want message_too_large from max_message_bytes", r.code, r.stderr)
		}
	})
	t.Run("EnvAndFlagsWin", func(t *testing.T) {
		t.Parallel()
		// The file's addresses are taken; TRINE_GRPC_ADDR and --http-addr
		// (which beats TRINE_HTTP_ADDR) must replace them. TRINE_CONFIG
		// names the file.
		env := testEnv("TRINE_TEST_GRPC_ADDR="+busyAddr(t), "TEST_HTTP_ADDR="+busyAddr(t), "TEST_DIR="+dir, "TRINE_CONFIG="+cfg,
			"TRINE_GRPC_ADDR=127.0.0.1:0", "TRINE_HTTP_ADDR="+busyAddr(t), "TRINE_MAX_MESSAGE_BYTES=4096", "TRINE_STORE=memory")
		e := startEngine(t, trineBin, env, "engine", "--http-addr", "127.0.0.1:0")
		mid := prefixPayload(2048)
		if r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check", mid); r.code != 0 {
			t.Errorf("2 KiB trigger = %d %q, want 0: TRINE_MAX_MESSAGE_BYTES should beat the file", r.code, r.stderr)
		}
	})
	t.Run("UnknownKey", func(t *testing.T) {
		t.Parallel()
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("data_dir: /tmp/x\ngrpc_adress: 127.0.0.1:0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runTrine(t, testEnv(), "", engineArgs(t, "--config", bad)...)
		if r.code != 2 || !strings.Contains(r.stderr, `line 2: unknown key "grpc_adress"`) {
			t.Errorf("engine with an unknown YAML key = exit %d, stderr %q; want 2 and the key named", r.code, r.stderr)
		}
		checkOneLine(t, "stderr", r.stderr)
	})
}

func TestEngineUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"UnknownFlag", []string{"--grpc-adr", "x"}, nil, "flag provided but not defined: -grpc-adr"},
		{"Positional", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"BadDuration", []string{"--shutdown-grace", "soon"}, nil, `invalid --shutdown-grace "soon"`},
		{"BadEnv", nil, []string{"TRINE_LOG_LEVEL=loud"}, `invalid TRINE_LOG_LEVEL "loud"`},
		{"MissingConfig", []string{"--config", "/nonexistent/trine.yaml"}, nil, "read config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runTrine(t, testEnv(tt.env...), "", engineArgs(t, tt.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("trine engine %v = exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
			}
			checkOneLine(t, "stderr", r.stderr)
		})
	}
}

// prefixPayload is a payload of about n bytes that the engine's built-in
// functions accept.
func prefixPayload(n int) string {
	return `{"prefix":"` + strings.Repeat("x", n) + `"}`
}
