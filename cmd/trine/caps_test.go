package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestEngineListAndChannelCaps: --max-list-bytes and
// --channels-max-per-connection reach the modules of a running engine, as
// a gRPC worker sees them: an unpaged state::list past the bound is
// message_too_large naming limit and after, pages bring every value, and a
// worker's channel past its cap is overloaded while another worker's is
// not.
func TestEngineListAndChannelCaps(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--max-list-bytes", "4096", "--channels-max-per-connection", "1")...)
	w := connectWorker(t, e.grpc)
	value := strings.Repeat("v", 1000)
	for i := range 10 {
		if _, err := w.Trigger(t.Context(), "state::set", map[string]any{"scope": "s", "key": fmt.Sprint("k", i), "value": value}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.Trigger(t.Context(), "state::list", map[string]any{"scope": "s"})
	var te *trine.Error
	if !errors.As(err, &te) || te.Code != "message_too_large" || !strings.Contains(te.Message, `"limit"`) || !strings.Contains(te.Message, `"after"`) {
		t.Fatalf("unpaged state::list of 10 KB with --max-list-bytes 4096 = %v, want message_too_large naming limit and after", err)
	}
	n, after := 0, ""
	for {
		out, err := w.Trigger(t.Context(), "state::list", map[string]any{"scope": "s", "limit": 100, "after": after})
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Items []struct{ Key string }
			More  bool
		}
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		n += len(p.Items)
		if !p.More {
			break
		}
		after = p.Items[len(p.Items)-1].Key
	}
	if n != 10 {
		t.Fatalf("pages brought %d values, want 10", n)
	}

	if _, err := w.Trigger(t.Context(), "engine::channels::create", nil); err != nil {
		t.Fatal(err)
	}
	_, err = w.Trigger(t.Context(), "engine::channels::create", nil)
	if !errors.As(err, &te) || te.Code != "overloaded" || !strings.Contains(te.Message, "--channels-max-per-connection") {
		t.Fatalf("second channel of a worker with --channels-max-per-connection 1 = %v, want overloaded naming the flag", err)
	}
	if _, err := connectWorker(t, e.grpc).Trigger(t.Context(), "engine::channels::create", nil); err != nil {
		t.Fatalf("another worker's channel: %v", err)
	}
}
