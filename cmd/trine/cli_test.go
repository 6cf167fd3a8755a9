package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	if r := runTrine(t, testEnv(), "", "version"); r.code != 0 || r.stdout != "trine dev\n" || r.stderr != "" {
		t.Errorf("trine version = exit %d, stdout %q, stderr %q; want 0 and \"trine dev\"", r.code, r.stdout, r.stderr)
	}
	if r := runTrine(t, testEnv(), "", "--version"); r.code != 0 || r.stdout != "trine dev\n" {
		t.Errorf("trine --version = exit %d, stdout %q; want 0 and \"trine dev\"", r.code, r.stdout)
	}
	if r := runTrine(t, testEnv(), "", "version", "extra"); r.code != 2 {
		t.Errorf("trine version extra = exit %d, want 2", r.code)
	}
}

// TestVersionLdflags: -X main.version reaches the version command, the
// listening line and engine::health::check.
func TestVersionLdflags(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "trine")
	if err := buildTrine(bin, "-X main.version=v9.8.7-test"); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, bin, testEnv(), "", "version")
	if code := p.wait(t, exitTimeout); code != 0 || p.stdout.String() != "trine v9.8.7-test\n" {
		t.Errorf("trine version = exit %d, stdout %q", code, p.stdout)
	}
	e := startEngine(t, bin, testEnv(), engineArgs(t)...)
	if e.version != "v9.8.7-test" {
		t.Errorf("listening line version = %q, want v9.8.7-test", e.version)
	}
	r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check")
	if !strings.Contains(r.stdout, `"version":"v9.8.7-test"`) {
		t.Errorf("health check = %q, want version v9.8.7-test", r.stdout)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	commands := []string{"engine", "trigger", "version", "help"}
	// With no command, usage goes to stderr and the exit code is 2, so a
	// script that forgot the command fails.
	if r := runTrine(t, testEnv(), ""); r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "Commands:") {
		t.Errorf("trine = exit %d, stdout %q, stderr %q; want 2 and usage on stderr", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"help"}, {"--help"}} {
		r := runTrine(t, testEnv(), "", args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("trine %v = exit %d, stderr %q; want 0", args, r.code, r.stderr)
		}
		for _, c := range commands {
			if !strings.Contains(r.stdout, "\n  "+c+" ") {
				t.Errorf("trine %v does not list %q:\n%s", args, c, r.stdout)
			}
		}
	}
	r := runTrine(t, testEnv(), "", "bogus")
	if r.code != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, `trine: unknown command "bogus"`) || !strings.Contains(r.stderr, "Commands:") {
		t.Errorf("trine bogus = exit %d, stdout %q, stderr %q; want 2 and usage on stderr", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"trigger", "--help"}, {"help", "trigger"}} {
		if r := runTrine(t, testEnv(), "", args...); r.code != 0 || !strings.Contains(r.stdout, "--engine ADDR") || !strings.Contains(r.stdout, "TRINE_ENGINE") {
			t.Errorf("trine %v = exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
}

// TestEngineHelp: --help documents every key with its flag, environment
// variable, YAML key and default.
func TestEngineHelp(t *testing.T) {
	t.Parallel()
	keys := []struct{ flag, env, yaml, def string }{
		{"--config", "TRINE_CONFIG", "", ""},
		{"--grpc-addr", "TRINE_GRPC_ADDR", "grpc_addr", "127.0.0.1:49134"},
		{"--iii-addr", "TRINE_III_ADDR", "iii_addr", "127.0.0.1:49135"},
		{"--iii-namespace-grace", "TRINE_III_NAMESPACE_GRACE", "iii_namespace_grace", "5s"},
		{"--http-addr", "TRINE_HTTP_ADDR", "http_addr", "127.0.0.1:3111"},
		{"--http-max-body-bytes", "TRINE_HTTP_MAX_BODY_BYTES", "http_max_body_bytes", "1048576"},
		{"--http-max-stream-body-bytes", "TRINE_HTTP_MAX_STREAM_BODY_BYTES", "http_max_stream_body_bytes", "1073741824"},
		{"--http-timeout", "TRINE_HTTP_TIMEOUT", "http_timeout", "30s"},
		{"--http-streaming", "TRINE_HTTP_STREAMING", "http_streaming", "on"},
		{"--data-dir", "TRINE_DATA_DIR", "data_dir", "./trine-data"},
		{"--default-timeout", "TRINE_DEFAULT_TIMEOUT", "default_timeout", "30s"},
		{"--shutdown-grace", "TRINE_SHUTDOWN_GRACE", "shutdown_grace", "10s"},
		{"--max-message-bytes", "TRINE_MAX_MESSAGE_BYTES", "max_message_bytes", "4194304"},
		{"--stream-addr", "TRINE_STREAM_ADDR", "stream_addr", "127.0.0.1:3112"},
		{"--nats-url", "TRINE_NATS_URL", "nats_url", ""},
		{"--nats-addr", "TRINE_NATS_ADDR", "nats_addr", "127.0.0.1:4222"},
		{"--nats-connect-timeout", "TRINE_NATS_CONNECT_TIMEOUT", "nats_connect_timeout", "30s"},
		{"--store", "TRINE_STORE", "store", "file"},
		{"--store-replicas", "TRINE_STORE_REPLICAS", "store_replicas", "1"},
		{"--stream-history", "TRINE_STREAM_HISTORY", "stream_history", "1000"},
		{"--stream-history-bytes", "TRINE_STREAM_HISTORY_BYTES", "stream_history_bytes", "16777216"},
		{"--stream-history-total-bytes", "TRINE_STREAM_HISTORY_TOTAL_BYTES", "stream_history_total_bytes", "268435456"},
		{"--stream-publish-queue-bytes", "TRINE_STREAM_PUBLISH_QUEUE_BYTES", "stream_publish_queue_bytes", "16777216"},
		{"--stream-max-item-bytes", "TRINE_STREAM_MAX_ITEM_BYTES", "stream_max_item_bytes", "1048576"},
		{"--state-max-value-bytes", "TRINE_STATE_MAX_VALUE_BYTES", "state_max_value_bytes", "524288"},
		{"--queue-ack-wait", "TRINE_QUEUE_ACK_WAIT", "queue_ack_wait", "30s"},
		{"--stream-auth-function", "TRINE_STREAM_AUTH_FUNCTION", "stream_auth_function", ""},
		{"--allowed-origins", "TRINE_ALLOWED_ORIGINS", "allowed_origins", ""},
		{"--allowed-hosts", "TRINE_ALLOWED_HOSTS", "allowed_hosts", ""},
		{"--stream-max-catchups", "TRINE_STREAM_MAX_CATCHUPS", "stream_max_catchups", "4"},
		{"--stream-max-catchups-total", "TRINE_STREAM_MAX_CATCHUPS_TOTAL", "stream_max_catchups_total", "64"},
		{"--stream-snapshot-page-bytes", "TRINE_STREAM_SNAPSHOT_PAGE_BYTES", "stream_snapshot_page_bytes", "262144"},
		{"--stream-max-frame-bytes", "TRINE_STREAM_MAX_FRAME_BYTES", "stream_max_frame_bytes", "1048576"},
		{"--stream-queue-messages", "TRINE_STREAM_QUEUE_MESSAGES", "stream_queue_messages", "4096"},
		{"--stream-queue-bytes", "TRINE_STREAM_QUEUE_BYTES", "stream_queue_bytes", "8388608"},
		{"--stream-ping-interval", "TRINE_STREAM_PING_INTERVAL", "stream_ping_interval", "25s"},
		{"--stream-sse-keepalive", "TRINE_STREAM_SSE_KEEPALIVE", "stream_sse_keepalive", "3s"},
		{"--stream-write-timeout", "TRINE_STREAM_WRITE_TIMEOUT", "stream_write_timeout", "10s"},
		{"--log-level", "TRINE_LOG_LEVEL", "log_level", "info"},
		{"--log-format", "TRINE_LOG_FORMAT", "log_format", "text"},
	}
	for _, args := range [][]string{{"engine", "--help"}, {"engine", "-h"}, {"help", "engine"}} {
		r := runTrine(t, testEnv(), "", args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("trine %v = exit %d, stderr %q; want 0", args, r.code, r.stderr)
		}
		for _, k := range keys {
			i := strings.Index(r.stdout, "  "+k.flag+" ")
			if i < 0 {
				t.Errorf("trine %v does not document %s:\n%s", args, k.flag, r.stdout)
				continue
			}
			entry, _, _ := strings.Cut(r.stdout[i+3:], "\n  --") // up to the next flag
			for _, want := range []string{"env " + k.env, "yaml " + k.yaml + ",", "default " + k.def + "\n"} {
				if k.yaml == "" && !strings.HasPrefix(want, "env") {
					continue
				}
				if !strings.Contains(entry+"\n", want) {
					t.Errorf("help for %s = %q, want it to contain %q", k.flag, entry, want)
				}
			}
		}
	}
}

// TestRunInProcess drives run itself: the engine starts, answers a trigger
// and returns 0 once its context ends, leaving no goroutine behind (which
// TestMain checks).
func TestRunInProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, engineArgs(t, "--log-level", "debug"), strings.NewReader(""), &stdout, &stderr)
	}()
	var m []string
	poll.CheckFor(t, startTimeout, poll.Holds("the listening line", func() bool {
		m = listeningLine.FindStringSubmatch(stdout.String())
		return m != nil
	}))

	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"trigger", "--engine", m[2], "engine::health::check"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.Contains(out.String(), `"status":"ok"`) {
		t.Errorf("in-process trigger = exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}

	cancel()
	timer := time.NewTimer(exitTimeout)
	defer timer.Stop()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("run(engine) = %d after cancel, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-timer.C:
		t.Fatalf("run(engine) did not return within %v of cancel", exitTimeout)
	}
}
