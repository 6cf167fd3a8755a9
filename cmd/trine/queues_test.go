package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestQueueJobSurvivesEngineKill: a job is running on a worker when its
// engine gets SIGKILL. After a restart on the same data directory (the
// embedded JetStream keeps the queue), the job runs again and completes;
// a queue config in YAML names the queue, and its mistakes stop the start.
func TestQueueJobSurvivesEngineKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "trine.yaml")
	if err := os.WriteFile(conf, []byte("queues:\n  jobs:\n    max_retries: 5\n    backoff_ms: 100\n  ledger:\n    type: fifo\n    message_group_field: account\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(engineArgs(t, "--config", conf, "--queue-ack-wait", "2s"), "--data-dir", filepath.Join(dir, "data"))
	e := startEngine(t, trineBin, testEnv(), args...)

	var calls atomic.Int64
	started := make(chan struct{}, 10)
	w := trine.RegisterWorker(e.grpc, trine.WithName("queue-test"), trine.WithCloseTimeout(time.Second),
		trine.WithReconnectBackoff(20*time.Millisecond, 100*time.Millisecond))
	t.Cleanup(func() { w.Close() })
	hang := make(chan struct{})
	defer close(hang)
	if err := w.RegisterFunction(t.Context(), "test::job", func(ctx context.Context, p json.RawMessage) (any, error) {
		n := calls.Add(1)
		started <- struct{}{}
		if n == 1 {
			select { // the first run never ends: its engine dies under it
			case <-hang:
			case <-ctx.Done():
			}
			return nil, ctx.Err()
		}
		if string(p) != `{"order":42}` {
			t.Errorf("payload %s", p)
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := w.Trigger(ctx, "engine::queue::enqueue", map[string]any{"queue": "jobs", "function_id": "test::job", "payload": map[string]int{"order": 42}})
	if err != nil || !strings.Contains(string(out), "messageReceiptId") {
		t.Fatalf("enqueue: %s %v", out, err)
	}
	if _, err := w.Trigger(ctx, "engine::queue::enqueue", map[string]any{"queue": "ledger", "function_id": "test::job", "payload": map[string]int{"order": 1}}); err == nil || !strings.Contains(err.Error(), "enqueue_error") {
		t.Fatalf("a fifo job without its group field: %v", err)
	}
	<-started
	if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.done
	startEngine(t, trineBin, testEnv(), append(args[:len(args):len(args)], "--grpc-addr", e.grpc)...)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatalf("the job did not run again after the engine's restart (%d calls)", calls.Load())
	}
	time.Sleep(3 * time.Second) // past another ack wait: nothing runs a third time
	if n := calls.Load(); n != 2 {
		t.Fatalf("the job ran %d times, want 2 (the killed run and one more)", n)
	}

	bad := filepath.Join(dir, "bad.yaml")
	for _, y := range []string{"queues:\n  q:\n    type: lifo\n", "queues:\n  q:\n    type: fifo\n", "queues:\n  q:\n    max_retries: x\n", "queues:\n  q:\n    colour: red\n", "queues:\n  a b: {}\n"} {
		os.WriteFile(bad, []byte(y), 0o600)
		r := runTrine(t, testEnv(), "", engineArgs(t, "--config", bad)...)
		if r.code != 2 || !strings.Contains(r.stderr, "queues:") {
			t.Errorf("config %q: exit %d, stderr %s", y, r.code, r.stderr)
		}
	}
}
