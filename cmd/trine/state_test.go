package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
)

// TestEngineStateSurvivesKill: state writes the engine acknowledged are
// there after SIGKILL and a restart on the same data directory, in a store
// of their own that stream::* never shows; trine trigger reaches the same
// functions, and a value over the limit is refused with VALUE_TOO_LARGE.
func TestEngineStateSurvivesKill(t *testing.T) {
	t.Parallel()
	args := engineArgs(t, "--store", "file", "--state-max-value-bytes", "1000")
	e := startEngine(t, trineBin, testEnv(), args...)
	w := connectWorker(t, e.grpc)

	var mu sync.Mutex
	acked := map[string]int{}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("%d-%d", g, i)
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := w.Trigger(cctx, "state::set", map[string]any{"scope": "durable", "key": key, "value": i})
				cancel()
				if err != nil {
					return // the engine is gone
				}
				mu.Lock()
				acked[key] = i
				mu.Unlock()
			}
		})
	}
	// Kill once 50 writes are acknowledged, however slow the machine.
	poll.CheckFor(t, 30*time.Second, poll.Holds("50 writes acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 50
	}))
	if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.done
	stop()
	wg.Wait()
	w.Close()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}

	e = startEngine(t, trineBin, testEnv(), args...)
	w = connectWorker(t, e.grpc)
	out, err := w.Trigger(t.Context(), "state::list", map[string]any{"scope": "durable", "limit": 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Items []struct {
			Key   string `json:"key"`
			Value int    `json:"value"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &page); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, it := range page.Items {
		got[it.Key] = it.Value
	}
	for k, v := range acked {
		if gv, ok := got[k]; !ok || gv != v {
			t.Fatalf("acknowledged write %s=%d lost after kill -9 (%d of %d kept)", k, v, len(got), len(acked))
		}
	}
	if out, err := w.Trigger(t.Context(), "stream::list_all", nil); err != nil || strings.Contains(string(out), "durable") {
		t.Fatalf("stream::list_all shows state: %s, %v", out, err)
	}

	r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "state::set", `{"scope":"cli","key":"k","value":{"a":1}}`)
	if r.code != 0 || !strings.Contains(r.stdout, `"new_value":{"a":1}`) {
		t.Fatalf("trine trigger state::set: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "state::set", `{"scope":"cli","key":"k","value":"`+strings.Repeat("x", 1000)+`"}`)
	if r.code == 0 || !strings.Contains(r.stderr, "VALUE_TOO_LARGE") {
		t.Fatalf("a value over --state-max-value-bytes: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if out, err := w.Trigger(t.Context(), "state::get", map[string]any{"scope": "cli", "key": "k"}); err != nil || string(out) != `{"a":1}` {
		t.Fatalf("after the refused write: %s, %v", out, err)
	}
}
