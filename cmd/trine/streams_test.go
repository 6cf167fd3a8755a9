package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	trine "github.com/trinehq/trine/worker-sdk"
)

func connectWorker(t *testing.T, addr string) *trine.Worker {
	t.Helper()
	w := trine.RegisterWorker(addr, trine.WithName("streams-test"), trine.WithCloseTimeout(time.Second),
		trine.WithReconnectBackoff(20*time.Millisecond, 100*time.Millisecond))
	t.Cleanup(func() { w.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestEngineStreamsEndToEnd: a write through the engine's gRPC listener
// reaches a WebSocket client of its stream listener, through the embedded
// NATS server.
func TestEngineStreamsEndToEnd(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t)...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+e.stream+"/stream/chat/room%201", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	read := func() map[string]any {
		t.Helper()
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]any
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := read(); f["event"].(map[string]any)["type"] != "sync" || f["groupId"] != "room 1" {
		t.Fatalf("first frame %v", f)
	}
	if _, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "chat", "group_id": "room 1", "item_id": "m1", "data": "hi"}); err != nil {
		t.Fatal(err)
	}
	if f := read(); f["event"].(map[string]any)["type"] != "create" || f["seq"] != 1.0 || f["id"] != "m1" {
		t.Fatalf("create frame %v", f)
	}
	if code, body := get(t, e.http+"/metrics"); code != 200 || !strings.Contains(body, "trine_stream_connections 1") ||
		!strings.Contains(body, "trine_stream_groups_subscribed 1") || !strings.Contains(body, "trine_stream_slow_consumer_closes_total 0") {
		t.Errorf("GET /metrics = %d, missing stream metrics:\n%.2000s", code, body)
	}
}

// TestEngineStoreSurvivesKill: every write the engine acknowledged is
// there after SIGKILL and a restart on the same data directory.
func TestEngineStoreSurvivesKill(t *testing.T) {
	t.Parallel()
	args := engineArgs(t, "--store", "file")
	e := startEngine(t, trineBin, testEnv(), args...)
	w := connectWorker(t, e.grpc)

	var mu sync.Mutex
	acked := map[string]int{}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("%d-%d", g, i)
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := w.Trigger(cctx, "stream::set", map[string]any{"stream_name": "durable", "group_id": strconv.Itoa(g % 2), "item_id": id, "data": i})
				cancel()
				if err != nil {
					return // the engine is gone
				}
				mu.Lock()
				acked[id] = i
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.done
	stop()
	wg.Wait()
	w.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}

	e = startEngine(t, trineBin, testEnv(), args...)
	w = connectWorker(t, e.grpc)
	got := map[string]int{}
	group0 := 0
	for _, g := range []string{"0", "1"} {
		out, err := w.Trigger(t.Context(), "stream::list", map[string]any{"stream_name": "durable", "group_id": g, "include_ids": true})
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Items []struct {
				ID   string `json:"id"`
				Data int    `json:"data"`
			} `json:"items"`
		}
		if err := json.Unmarshal(out, &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			got[it.ID] = it.Data
		}
		if g == "0" {
			group0 = len(page.Items)
		}
	}
	lost := 0
	for id, v := range acked {
		if gv, ok := got[id]; !ok || gv != v {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost after kill -9", lost, len(acked))
	}
	t.Logf("%d acknowledged writes survived kill -9 (%d stored, including unacknowledged)", len(acked), len(got))
	// Sequences continue after the restart.
	out, err := w.Trigger(t.Context(), "stream::set", map[string]any{"stream_name": "durable", "group_id": "0", "item_id": "after", "data": 1})
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Seq uint64 }
	json.Unmarshal(out, &r)
	if r.Seq != uint64(group0)+1 {
		t.Fatalf("sequence after restart = %d, want %d: one past the group's %d writes", r.Seq, group0+1, group0)
	}
}

// TestEngineNATSListener: the embedded NATS server can accept other
// processes, and a second engine started with --nats-url publishes through
// it: a write through engine B reaches a browser on engine A's gateway.
func TestEngineNATSListener(t *testing.T) {
	t.Parallel()
	a := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--store", "memory")...)
	natsAddr, ok := strings.CutPrefix(a.nats, "embedded,")
	if !ok || !strings.HasPrefix(natsAddr, "127.0.0.1:") {
		t.Fatalf("engine A nats = %q, want embedded,127.0.0.1:PORT", a.nats)
	}
	b := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", "nats://"+natsAddr, "--store", "memory")...)
	if b.nats != "nats://"+natsAddr {
		t.Fatalf("engine B nats = %q", b.nats)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+a.stream+"/stream/s/g", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil { // the sync
		t.Fatal(err)
	}
	w := connectWorker(t, b.grpc)
	if _, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "s", "group_id": "g", "item_id": "i", "data": "from B"}); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || !strings.Contains(string(msg), `"data":"from B"`) {
		t.Fatalf("engine A's client got %s, %v", msg, err)
	}
}

func TestEngineNATSBusyPort(t *testing.T) {
	t.Parallel()
	addr := busyAddr(t)
	r := runTrine(t, testEnv(), "", engineArgs(t, "--nats-addr", addr)...)
	if r.code != 1 || !strings.Contains(r.stderr, "listen nats "+addr) || !strings.Contains(r.stderr, "address already in use") {
		t.Fatalf("busy NATS port: exit %d, stderr %q", r.code, r.stderr)
	}
}
