package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestTriggersRelease: a worker registers a stream:join trigger and
// leaves; trine triggers list shows it orphaned with its reason, joins
// stay denied, and trine triggers release ends it.
func TestTriggersRelease(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.RegisterFunction(ctx, "gate::deny", func(context.Context, json.RawMessage) (any, error) {
		return map[string]bool{"unauthorized": true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(ctx, trine.Trigger{ID: "gate", Type: "stream:join", FunctionID: "gate::deny", Config: map[string]string{"stream_name": "secret"}}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	cli := func(args ...string) result {
		t.Helper()
		return runTrine(t, testEnv("TRINE_ENGINE="+e.grpc), "", args...)
	}
	var r result
	poll.CheckFor(t, 10*time.Second, poll.Holds("the orphaned trigger in trine triggers list", func() bool {
		r = cli("triggers", "list")
		return strings.Contains(r.stdout, `"status":"orphaned"`)
	}))
	if r.code != 0 || !strings.Contains(r.stdout, `"id":"gate"`) || !strings.Contains(r.stdout, `"reason":"its worker disconnected`) {
		t.Fatalf("trine triggers list = exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	join := func() string {
		t.Helper()
		r := cli("trigger", "engine::streams::join", `{"subscription_id":"s","stream_name":"secret","group_id":"g"}`)
		if r.code != 0 {
			t.Fatalf("join: exit %d %s", r.code, r.stderr)
		}
		return r.stdout
	}
	if out := join(); !strings.Contains(out, `"allowed":false`) {
		t.Fatalf("join while orphaned = %s, want denied", out)
	}
	if r := cli("triggers", "release", "nope"); r.code != 1 || !strings.Contains(r.stderr, `"code":"trigger_not_found"`) {
		t.Errorf("release of an unknown id = exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	if r := cli("triggers", "release"); r.code != 2 || !strings.Contains(r.stderr, "TRIGGER_ID") {
		t.Errorf("release without an id = exit %d %s", r.code, r.stderr)
	}
	if r := cli("triggers", "release", "--engine", e.grpc, "gate"); r.code != 0 || !strings.Contains(r.stdout, `"released":true`) {
		t.Fatalf("trine triggers release gate = exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	if out := join(); !strings.Contains(out, `"allowed":true`) {
		t.Fatalf("join after the release = %s, want allowed", out)
	}
	if r := cli("triggers", "--help"); r.code != 0 || !strings.Contains(r.stdout, "release") || !strings.Contains(r.stdout, "--engine ADDR") {
		t.Errorf("trine triggers --help = exit %d %s", r.code, r.stdout)
	}
}
