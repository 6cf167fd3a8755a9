package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
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
// NATS server, and the metrics count it as one live delivery.
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
	if code, body := get(t, e.http+"/metrics"); code != 200 || !containsAll(body, `trine_stream_connections{transport="ws"} 1`, `trine_stream_connections{transport="sse"} 0`,
		"trine_stream_groups_subscribed 1", "trine_stream_slow_consumer_closes_total 0", "trine_stream_deliveries_total 1", "trine_nats_connected 1",
		"trine_nats_reconnects_total 0", "trine_stream_publishes_total 1", "trine_stream_history_events 1",
		`trine_listener_connections{listener="stream"} 1`, `trine_listener_accepts_total{listener="stream"} 1`, `trine_listener_connections{listener="grpc"} 1`) {
		t.Errorf("GET /metrics = %d, missing stream metrics:\n%.4000s", code, body)
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
	a := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--store", "jetstream")...)
	natsAddr, ok := strings.CutPrefix(a.nats, "embedded,")
	if !ok || !strings.HasPrefix(natsAddr, "127.0.0.1:") {
		t.Fatalf("engine A nats = %q, want embedded,127.0.0.1:PORT", a.nats)
	}
	b := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", "nats://"+natsAddr, "--store", "jetstream")...)
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
	if r.code != 1 || !strings.Contains(r.stderr, "listen nats "+addr) || !strings.Contains(r.stderr, "address already in use; change --nats-addr") {
		t.Fatalf("busy NATS port: exit %d, stderr %q", r.code, r.stderr)
	}
}

var gatewayLine = regexp.MustCompile(`(?m)^trine gateway (\S+) listening: stream=(\S+) http=(\S+) engine=(\S+) nats=(\S+)(?: [a-z/0-9-]+=\S+)*$`)

// containsAll tells whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// startGateway runs `trine gateway` against an engine and returns its
// stream and HTTP addresses.
func startGateway(t *testing.T, args ...string) (stream, http string) {
	t.Helper()
	_, stream, http = startGatewayProc(t, args...)
	return stream, http
}

// startGatewayProc is startGateway with the process, for tests that kill
// it: one that ended before the test did is not checked at the end.
func startGatewayProc(t *testing.T, args ...string) (p *proc, stream, http string) {
	t.Helper()
	p = startProc(t, trineBin, testEnv(), "", append([]string{"gateway", "--stream-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)...)
	var m []string
	poll.CheckFor(t, startTimeout, poll.Holds("the gateway's listening line", func() bool {
		select {
		case <-p.done:
			t.Fatalf("gateway exited with code %d; stderr:\n%s", p.code, p.stderr)
		default:
		}
		m = gatewayLine.FindStringSubmatch(p.stdout.String())
		return m != nil
	}))
	t.Cleanup(func() {
		select {
		case <-p.done:
			return // killed by the test
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.code != 0 {
				t.Errorf("gateway exited with %d on SIGTERM; stderr:\n%s", p.code, p.stderr)
			}
			if t.Failed() {
				t.Logf("gateway stderr:\n%s", p.stderr)
			}
		case <-time.After(exitTimeout):
			t.Error("gateway did not exit on SIGTERM")
		}
	})
	return p, m[2], "http://" + m[3]
}

// TestGatewayProcess: trine gateway serves browsers from its own process:
// events through NATS, snapshots, history, auth and join decisions
// through the engine.
func TestGatewayProcess(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--store", "memory", "--stream-auth-function", "test::auth")...)
	natsAddr, _ := strings.CutPrefix(e.nats, "embedded,")
	w := connectWorker(t, e.grpc)
	if err := w.RegisterFunction(t.Context(), "test::auth", func(_ context.Context, in json.RawMessage) (any, error) {
		var a struct {
			QueryParams map[string][]string `json:"query_params"`
		}
		json.Unmarshal(in, &a)
		if len(a.QueryParams["token"]) == 0 || a.QueryParams["token"][0] != "ok" {
			return nil, fmt.Errorf("bad token")
		}
		return map[string]any{"context": "user-1"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if _, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "s", "group_id": "g", "item_id": "a", "data": 1}); err != nil {
		t.Fatal(err)
	}
	stream, httpAddr := startGateway(t, "--engine", e.grpc, "--nats-url", "nats://"+natsAddr, "--stream-auth-function", "test::auth")
	poll.CheckFor(t, startTimeout, poll.Holds("the gateway to be ready", func() bool { code, _ := get(t, httpAddr+"/readyz"); return code == 200 }))

	if _, resp, err := websocket.Dial(ctx, "ws://"+stream+"/stream/s/g?token=bad", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("bad token: %v", err)
	}
	c, _, err := websocket.Dial(ctx, "ws://"+stream+"/stream/s/g?token=ok", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, b, err := c.Read(ctx)
	if err != nil || !strings.Contains(string(b), `"type":"sync","data":[1],"ids":["a"]`) {
		t.Fatalf("sync through the gateway: %s %v", b, err)
	}
	if _, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "s", "group_id": "g", "item_id": "b", "data": 2}); err != nil {
		t.Fatal(err)
	}
	if _, b, err = c.Read(ctx); err != nil || !strings.Contains(string(b), `"seq":2`) {
		t.Fatalf("live event through the gateway: %s %v", b, err)
	}
	r, _, err := websocket.Dial(ctx, "ws://"+stream+"/stream/s/g?token=ok&since=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.CloseNow()
	if _, b, err = r.Read(ctx); err != nil || !strings.Contains(string(b), `"seq":2`) || !strings.Contains(string(b), `"type":"create"`) {
		t.Fatalf("replay through the gateway: %s %v", b, err)
	}
	if code, body := get(t, httpAddr+"/metrics"); code != 200 || !containsAll(body, `trine_stream_connections{transport="ws"} 2`,
		"trine_gateway_engine_connected 1", "trine_gateway_engine_reconnects_total 0", "trine_nats_connected 1", `trine_listener_connections{listener="stream"} 2`) {
		t.Errorf("gateway /metrics = %d:\n%.1000s", code, body)
	}
}

func TestGatewayHelpAndErrors(t *testing.T) {
	t.Parallel()
	r := runTrine(t, testEnv(), "", "gateway", "--help")
	for _, want := range []string{"--engine ADDRS", "env TRINE_ENGINE", "--nats-url URLS", "default nats://127.0.0.1:4222", "--stream-addr ADDR", "default 127.0.0.1:3114", "--http-addr ADDR", "default 127.0.0.1:3113", "--allowed-origins", "--allowed-hosts"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("trine gateway --help: exit %d, missing %q:\n%s", r.code, want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "--store") || strings.Contains(r.stdout, "--grpc-addr") {
		t.Errorf("trine gateway --help lists engine-only settings:\n%s", r.stdout)
	}
	if r := runTrine(t, testEnv(), "", "gateway", "--store", "memory"); r.code != 2 {
		t.Errorf("engine-only flag: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runTrine(t, testEnv(), "", "gateway", "--stream-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--nats-url", "nats://127.0.0.1:1", "--nats-connect-timeout", "300ms")
	if r.code != 1 || !strings.Contains(r.stderr, "nats: connect nats://127.0.0.1:1") {
		t.Errorf("unreachable NATS: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestEnginesRouteCalls: a worker on engine A serves calls made through
// engine B, which shares A's NATS.
func TestEnginesRouteCalls(t *testing.T) {
	t.Parallel()
	a := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--store", "jetstream")...)
	natsAddr, _ := strings.CutPrefix(a.nats, "embedded,")
	b := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-url", "nats://"+natsAddr, "--store", "jetstream")...)
	wa := connectWorker(t, a.grpc)
	if err := wa.RegisterFunction(t.Context(), "test::where", func(context.Context, json.RawMessage) (any, error) { return "served by a worker of A", nil }); err != nil {
		t.Fatal(err)
	}
	r := runTrine(t, testEnv(), "", "trigger", "--engine", b.grpc, "test::where")
	if r.code != 0 || strings.TrimSpace(r.stdout) != `"served by a worker of A"` {
		t.Fatalf("trigger through B: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runTrine(t, testEnv(), "", "trigger", "--engine", b.grpc, "test::nobody")
	if r.code != 1 || decodeFailure(t, r).Code != "function_not_found" {
		t.Fatalf("unknown function through B: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestEngineLargeItemsAllOrNothing: with a small --max-message-bytes, an
// item whose set result (old and new values) could not be sent back is
// refused before it is stored, so an error always means nothing changed.
func TestEngineLargeItemsAllOrNothing(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--max-message-bytes", "1000000")...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	set := func(n int) error {
		_, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "big", "group_id": "g", "item_id": "x", "data": strings.Repeat("a", n)})
		return err
	}
	for _, n := range []int{400_000, 400_000, 600_000, 600_000} {
		before, err := w.Trigger(ctx, "stream::get", map[string]any{"stream_name": "big", "group_id": "g", "item_id": "x", "include_seq": true})
		if err != nil {
			t.Fatal(err)
		}
		err = set(n)
		after, gerr := w.Trigger(ctx, "stream::get", map[string]any{"stream_name": "big", "group_id": "g", "item_id": "x", "include_seq": true})
		if gerr != nil {
			t.Fatal(gerr)
		}
		switch {
		case err != nil && !errors.Is(err, trine.ErrMessageTooLarge):
			t.Fatalf("set %d bytes: %v", n, err)
		case err != nil && !bytes.Equal(before, after):
			t.Fatalf("set %d bytes failed (%v) but changed the item", n, err)
		case err == nil && n > 500_000:
			t.Fatalf("set %d bytes accepted: its result cannot fit 1,000,000 bytes", n)
		}
	}
}

// TestGatewayWithoutEngine: a gateway whose engine is not reachable
// refuses browsers with 503 and says why, instead of answering 200 and
// sending nothing.
func TestGatewayWithoutEngine(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--store", "memory")...)
	natsAddr, _ := strings.CutPrefix(e.nats, "embedded,")
	stream, httpAddr := startGateway(t, "--engine", "127.0.0.1:1", "--nats-url", "nats://"+natsAddr)
	if code, body := getSSE(t, stream); code != http.StatusServiceUnavailable || !strings.Contains(body, "no engine reachable at 127.0.0.1:1") {
		t.Fatalf("SSE without an engine: %d %q", code, body)
	}
	if code, _ := get(t, httpAddr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without an engine: %d", code)
	}
}

// TestGatewayLosesItsEngine: a gateway whose only engine stops reports
// not ready with the reason, and refuses browsers with 503 instead of
// holding them with no bytes.
func TestGatewayLosesItsEngine(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	args := engineArgs(t, "--nats-url", ns.ClientURL(), "--store", "memory")
	e := startEngine(t, trineBin, testEnv(), args...)
	stream, httpAddr := startGateway(t, "--engine", e.grpc, "--nats-url", ns.ClientURL())
	poll.CheckFor(t, startTimeout, poll.Holds("the gateway to be ready", func() bool { code, _ := get(t, httpAddr+"/readyz"); return code == 200 }))
	e.signal(t, syscall.SIGTERM)
	if code := e.wait(t, exitTimeout); code != 0 {
		t.Fatalf("engine exited %d", code)
	}
	var body string
	poll.CheckFor(t, startTimeout, poll.Holds("/readyz to report the lost engine", func() bool {
		var code int
		code, body = get(t, httpAddr+"/readyz")
		return code == http.StatusServiceUnavailable
	}))
	if !strings.Contains(body, "no engine reachable at "+e.grpc+" (--engine)") {
		t.Fatalf("/readyz without its engine: %s", body)
	}
	if code, body := getSSE(t, stream); code != http.StatusServiceUnavailable || !strings.Contains(body, "no engine reachable") {
		t.Fatalf("SSE without its engine: %d %q", code, body)
	}
}

// getSSE opens an SSE subscription to group g of stream s on a gateway
// expected to refuse it, and returns the status and body of the answer.
func getSSE(t *testing.T, stream string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+stream+"/stream/s/g", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEngineRefusesCorruptJournal: a flipped byte in the middle of the
// journal after SIGKILL makes the engine refuse to start, naming the file
// and offset, without touching it; trine store verify reports it, repair
// moves it aside and keeps every readable record, and the engine starts.
func TestEngineRefusesCorruptJournal(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"engine", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0",
		"--iii-addr", "127.0.0.1:0", "--nats-addr", "off", "--data-dir", dataDir, "--store", "file"}
	e := startEngine(t, trineBin, testEnv(), args...)
	w := connectWorker(t, e.grpc)
	for i := range 50 {
		if _, err := w.Trigger(t.Context(), "stream::set", map[string]any{"stream_name": "s", "group_id": "g", "item_id": strconv.Itoa(i), "data": i}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.done
	journal := filepath.Join(dataDir, "streams", "journal")
	data, err := os.ReadFile(journal)
	if err != nil || len(data) == 0 {
		t.Fatalf("journal: %d bytes, %v", len(data), err)
	}
	data[len(data)/2] ^= 0xFF
	if err := os.WriteFile(journal, data, 0o644); err != nil {
		t.Fatal(err)
	}

	p := startProc(t, trineBin, testEnv(), "", args...)
	if code := p.wait(t, exitTimeout); code != 1 || !strings.Contains(p.stderr.String(), journal+" is corrupt at offset") {
		t.Fatalf("engine on a corrupt journal: exit %d, stderr %s", code, p.stderr)
	}
	if after, _ := os.ReadFile(journal); !bytes.Equal(after, data) {
		t.Fatal("the refused start changed the journal")
	}
	if r := runTrine(t, testEnv(), "", "store", "verify", "--data-dir", dataDir); r.code != 1 || !strings.Contains(r.stdout, "damaged: "+journal) {
		t.Fatalf("trine store verify: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}
	if r := runTrine(t, testEnv(), "", "store", "repair", "--data-dir", dataDir); r.code != 0 || !strings.Contains(r.stdout, "repaired: the damaged file is kept as "+journal+".corrupt-") {
		t.Fatalf("trine store repair: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}
	e = startEngine(t, trineBin, testEnv(), args...)
	w = connectWorker(t, e.grpc)
	out, err := w.Trigger(t.Context(), "stream::list", map[string]any{"stream_name": "s", "group_id": "g"})
	if err != nil {
		t.Fatal(err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(out, &items); err != nil || len(items) != 49 {
		t.Fatalf("after repair: %d items (%v); want 49, one record lost to the damage", len(items), err)
	}
}
