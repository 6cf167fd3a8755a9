package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
)

// Clients that join while writers run see a snapshot and then every later
// event exactly once, in order: their final state equals the store's.
func TestJoinDuringWrites(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	// The writers go on while the clients join, but write at most
	// maxPerWriter each, so that every client's queue (4096 frames) holds
	// all it is sent however fast this machine writes: the test no longer
	// depends on speed (unthrottled writers overflowed slow runs, 1008).
	const maxPerWriter = 250
	joined := make(chan struct{})
	var started sync.WaitGroup
	started.Add(4)
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := range maxPerWriter {
				if i == 1 {
					started.Done()
				}
				select {
				case <-joined:
					if i > 20 {
						return
					}
				default:
				}
				s.set(t, "race", "g", strconv.Itoa(w*10+i%10), i)
			}
		})
	}
	started.Wait() // every writer is writing
	const clients = 20
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = s.dial(t, groupPath("race", "g"), nil)
	}
	close(joined)
	writers.Wait()
	var final map[string]json.RawMessage
	out := s.call(t, "stream::list", map[string]any{"stream_name": "race", "group_id": "g", "include_ids": true})
	var page struct {
		Items []struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		} `json:"items"`
		Seq uint64 `json:"seq"`
	}
	json.Unmarshal([]byte(out), &page)
	final = map[string]json.RawMessage{}
	for _, it := range page.Items {
		final[it.ID] = it.Data
	}
	for n, c := range cs {
		f := c.read()
		must(t, f.kind() == "sync", "client %d first frame: %s", n, f.Raw)
		e := f.event(t)
		var vals []json.RawMessage
		json.Unmarshal(e.Data, &vals)
		state := map[string]json.RawMessage{}
		for i, id := range e.IDs {
			state[id] = vals[i]
		}
		last := f.Seq
		for last < page.Seq {
			f := c.read()
			must(t, f.Seq == last+1, "client %d: seq %d after %d (gap or duplicate)", n, f.Seq, last)
			last = f.Seq
			state[*f.ID] = f.event(t).Data
		}
		must(t, fmt.Sprint(state) == fmt.Sprint(final), "client %d converged on %v, store has %v", n, state, final)
	}
}

func TestSinceRecoveryAndResync(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{HistorySize: 5})
	for i := range 3 {
		s.set(t, "s", "g", "a", i) // seqs 1..3
	}
	c := s.dial(t, groupPath("s", "g", "since=1"), nil)
	for _, want := range []uint64{2, 3} {
		f := c.read()
		must(t, f.kind() == "update" && f.Seq == want, "replayed %d: %s", want, f.Raw)
	}
	s.set(t, "s", "g", "b", 9)
	must(t, c.read().Seq == 4, "live after replay")
	c.quiet(50 * time.Millisecond)

	// Current already: nothing to replay, then live.
	c = s.dial(t, "/", nil)
	c.send(join("x", "s", "g", "since", 4))
	s.set(t, "s", "g", "b", 10)
	f := c.read()
	must(t, f.Seq == 5 && *f.SubscriptionID == "x" && f.kind() == "update", "current client: %s", f.Raw)

	// History holds 5 events (1..5 → now 2..6 after one more write);
	// since=0 is out of reach: a resync snapshot instead.
	s.set(t, "s", "g", "c", 1)
	c = s.dial(t, groupPath("s", "g", "since=0"), nil)
	f = c.read()
	e := f.event(t)
	must(t, f.kind() == "sync" && e.Resync && f.Seq == 6, "resync: %s", f.Raw)
	// A sequence from the future (the store was reset) resyncs too.
	c = s.dial(t, groupPath("s", "g", "since=99"), nil)
	f = c.read()
	must(t, f.kind() == "sync" && f.event(t).Resync, "future since: %s", f.Raw)
	must(t, s.gw.Stats().Resyncs == 2, "resyncs counted: %+v", s.gw.Stats())
	// An item subscription replays only its item.
	s.set(t, "s", "g", "a", 100) // 7
	s.set(t, "s", "g", "b", 100) // 8
	c = s.dial(t, groupPath("s", "g", "item_id=b", "since=6"), nil)
	f = c.read()
	must(t, f.Seq == 8 && *f.ID == "b", "item replay: %s", f.Raw)
	c.quiet(50 * time.Millisecond)
}

func TestAuthFailsClosed(t *testing.T) {
	s := newStack(t, gateway.Config{AuthFunction: "auth::check"}, streammodule.Config{})
	// The auth function is not registered yet: every connection is refused.
	resp := get(t, s.srv.URL+groupPath("s", "g"))
	must(t, resp.StatusCode == http.StatusUnauthorized, "no auth function: %s", resp.Status)

	var joins atomic.Value
	s.e.RegisterFunction("auth::check", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var in struct {
			Headers     map[string]string   `json:"headers"`
			QueryParams map[string][]string `json:"query_params"`
			Path        string              `json:"path"`
			Addr        string              `json:"addr"`
		}
		json.Unmarshal(c.Payload, &in)
		switch in.QueryParams["token"][0] {
		case "good":
			return json.Marshal(map[string]any{"context": map[string]any{"user": in.Headers["x-user"], "path": in.Path, "addr": in.Addr != ""}})
		case "string":
			return []byte(`"yes"`), nil
		case "null":
			return []byte(`null`), nil
		case "empty":
			return []byte(`{}`), nil
		case "flag":
			return []byte(`{"unauthorized":true}`), nil
		case "allowed-false":
			return []byte(`{"allowed":false}`), nil
		case "array":
			return []byte(`[{"context":1}]`), nil
		}
		return nil, errors.New("bad token")
	}))
	s.e.RegisterFunction("auth::join", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		joins.Store(string(c.Payload))
		if json.Valid(c.Payload) && string(c.Payload) != "" && containsDeny(c.Payload) {
			return []byte(`{"unauthorized":true}`), nil
		}
		return []byte(`{}`), nil
	}))
	sess, err := s.e.Attach(engine.WorkerInfo{Name: "t"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RegisterTrigger(context.Background(), engine.Trigger{ID: "j", Type: "stream:join", FunctionID: "auth::join", Config: json.RawMessage(`{"stream_name":"s"}`)}); err != nil {
		t.Fatal(err)
	}
	// Only {"context": …} admits, on every path: SSE, ?stream=, since,
	// and WebSocket on a group and on the multiplexed socket.
	for _, tok := range []string{"bad", "string", "null", "empty", "flag", "allowed-false", "array"} {
		for _, path := range []string{groupPath("s", "g", "token="+tok), groupPath(".", "..", "token="+tok),
			groupPath("s", "g", "token="+tok, "since=0")} {
			resp := get(t, s.srv.URL+path)
			must(t, resp.StatusCode == http.StatusUnauthorized, "token %s, SSE %s: %s", tok, path, resp.Status)
		}
		for _, path := range []string{"/?token=" + tok, groupPath("s", "g", "token="+tok)} {
			_, resp, err := websocket.Dial(context.Background(), s.wsURL(path), nil)
			must(t, err != nil && resp != nil && resp.StatusCode == http.StatusUnauthorized, "token %s, WebSocket %s: %v", tok, path, err)
		}
	}
	st := s.gw.Stats()
	must(t, st.AuthRefusals[gateway.TransportSSE] == 1+7*3 && st.AuthRefusals[gateway.TransportWebSocket] == 7*2, "refusals counted by transport: %+v", st.AuthRefusals)
	c := s.dial(t, "/?token=good", http.Header{"X-User": {"ann"}})
	c.send(join("ok", "s", "g"))
	must(t, c.read().kind() == "sync", "allowed join")
	var p struct {
		SubscriptionID string          `json:"subscription_id"`
		Context        json.RawMessage `json:"context"`
	}
	json.Unmarshal([]byte(joins.Load().(string)), &p)
	must(t, p.SubscriptionID == "ok" && string(p.Context) == `{"addr":true,"path":"/","user":"ann"}`, "join payload: %s", joins.Load())
	c.send(join("deny", "s", "deny"))
	f := c.read()
	must(t, f.kind() == "unauthorized" && *f.SubscriptionID == "deny", "denied join: %s", f.Raw)
	s.set(t, "s", "deny", "x", 1)
	s.set(t, "s", "g", "x", 1)
	f = c.read()
	must(t, *f.SubscriptionID == "ok", "only the allowed subscription gets events: %s", f.Raw)
	// A join handler that fails denies too.
	s.e.RegisterFunction("auth::broken", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("boom")
	}))
	sess.RegisterTrigger(context.Background(), engine.Trigger{ID: "b", Type: "stream:join", FunctionID: "auth::broken", Config: json.RawMessage(`{"stream_name":"s","group_id":"fragile"}`)})
	c.send(join("f", "s", "fragile"))
	must(t, c.read().kind() == "unauthorized", "failing join handler")
	must(t, s.gw.Stats().ConnsByTransport == [2]int{1, 0}, "one WebSocket open: %+v", s.gw.Stats())
}

func containsDeny(b []byte) bool {
	var p struct {
		GroupID string `json:"group_id"`
	}
	json.Unmarshal(b, &p)
	return p.GroupID == "deny"
}

type nopPeer struct{}

func (nopPeer) Invoke(context.Context, engine.Invocation) error { return errors.New("no worker") }
func (nopPeer) Cancel(string)                                   {}
func (nopPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

func get(t *testing.T, u string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestOrigins(t *testing.T) {
	s := newStack(t, gateway.Config{AllowedOrigins: []string{"https://app.example"}}, streammodule.Config{})
	ctx := context.Background()
	// DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends
	// Host and Origin both evil.example. The loopback listener refuses
	// the host, allowed origins or not, with or without Origin.
	for _, h := range []http.Header{{"Origin": {"http://evil.example"}}, {}} {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+groupPath("s", "g"), nil)
		req.Host = "evil.example"
		req.Header = h
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		must(t, resp.StatusCode == http.StatusMisdirectedRequest, "rebinding %v: %s", h, resp.Status)
	}
	_, resp, err := websocket.Dial(ctx, s.wsURL("/"), &websocket.DialOptions{Host: "evil.example", HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	must(t, err != nil && resp != nil && resp.StatusCode == http.StatusMisdirectedRequest, "rebinding WebSocket: %v", err)
	_, resp, err = websocket.Dial(ctx, s.wsURL("/"), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	must(t, err != nil && resp != nil && resp.StatusCode == http.StatusForbidden, "cross-site origin: %v", err)
	// Pages of this machine (the listener is on loopback) connect with no
	// setting: a page served by python3 -m http.server, or by a dev server.
	for _, o := range []string{"https://app.example", s.srv.URL, "http://localhost:8000", "http://127.0.0.1:5173", "https://[::1]:3000"} {
		c := s.dial(t, "/", http.Header{"Origin": {o}})
		c.send(map[string]any{"type": "ping"})
		must(t, c.read().Type == "pong", "origin %s", o)
	}
}

// One client that stops reading is closed with 1008 once its queue is full;
// a hundred others on the same group keep getting every event of the item
// they watch, promptly, while the stalled socket fills with large values of
// another item.
func TestSlowClientIsolation(t *testing.T) {
	s := newStack(t, gateway.Config{QueueBytes: 1 << 20}, streammodule.Config{})
	// The stalled client: a raw socket with a small receive buffer that
	// upgrades and never reads.
	stalled := rawUpgrade(t, s, groupPath("s", "g"))
	fast := make([]*client, 100)
	for i := range fast {
		fast[i] = s.dial(t, groupPath("s", "g", "item_id=x"), nil)
		must(t, fast[i].read().kind() == "sync", "sync")
	}
	pad := strings.Repeat("x", 64<<10)
	n := 0
	var worst time.Duration
	for ; s.gw.Stats().SlowConsumerCloses == 0; n++ {
		must(t, n < 1000, "the stalled client was never closed")
		s.set(t, "s", "g", "big", pad)
		s.set(t, "s", "g", "x", n)
		sent := time.Now()
		for i, c := range fast {
			f := c.read()
			must(t, f.Seq == uint64(2*n+2) && string(f.event(t).Data) == strconv.Itoa(n), "client %d: %s", i, f.Raw)
		}
		worst = max(worst, time.Since(sent))
	}
	t.Logf("stalled client closed after %d large events; the slowest round to 100 others took %v", n, worst)
	// The stalled client reads at last: what the kernel buffered, then the
	// close frame.
	code, reason := readUntilClose(t, stalled)
	must(t, code == 1008 && strings.Contains(reason, "slow consumer"), "stalled client closed with %d %q", code, reason)
}

func rawUpgrade(t *testing.T, s *stack, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	nc, err := d.Dial("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	return nc
}

// readUntilClose reads raw server frames until a close frame.
func readUntilClose(t *testing.T, nc net.Conn) (int, string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := newFrameReader(nc)
	for {
		op, payload, err := r.next()
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if op == 0x8 {
			if len(payload) < 2 {
				return 1005, ""
			}
			return int(payload[0])<<8 | int(payload[1]), string(payload[2:])
		}
	}
}

// lossyEvents drops chosen events on their way to the gateway, as NATS
// does for a slow consumer.
type lossyEvents struct {
	gateway.Events
	drop func(seq uint64) bool
}

func (l lossyEvents) Subscribe(stream, group string, h func([]byte)) (func(), error) {
	return l.Events.Subscribe(stream, group, func(b []byte) {
		var f struct{ Seq uint64 }
		json.Unmarshal(b, &f)
		if !l.drop(f.Seq) {
			h(b)
		}
	})
}

// Events the gateway never received are replayed from history: clients
// still see every sequence once, in order.
func TestGatewayRecoversMissedEvents(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	// A second gateway on the same module whose event feed loses some.
	lossy, err := gateway.New(gateway.Config{Backend: s.m, Events: lossyEvents{s.sub, func(seq uint64) bool { return seq%7 == 3 }}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lossy)
	t.Cleanup(func() { lossy.Close(); srv.Close() })
	ls := &stack{srv: srv}
	group := ls.dial(t, groupPath("s", "g"), nil)
	item := ls.dial(t, groupPath("s", "g", "item_id=a"), nil)
	must(t, group.read().kind() == "sync" && item.read().kind() == "sync", "syncs")
	const n = 50
	for i := 1; i <= n; i++ {
		s.set(t, "s", "g", []string{"a", "b"}[i%2], i)
	}
	for i := 1; i <= n; i++ {
		f := group.read()
		must(t, f.Seq == uint64(i) && f.kind() != "sync", "group client: seq %d, want %d: %s", f.Seq, i, f.Raw)
	}
	for i := 2; i <= n; i += 2 {
		f := item.read()
		must(t, f.Seq == uint64(i) && *f.ID == "a", "item client: seq %d, want %d: %s", f.Seq, i, f.Raw)
	}
	group.quiet(50 * time.Millisecond)
	item.quiet(0)
}

// Snapshots and replays do not count against the live-event queue limits:
// a group larger than QueueBytes can still be subscribed to.
func TestLargeSnapshotFits(t *testing.T) {
	s := newStack(t, gateway.Config{QueueBytes: 64 << 10}, streammodule.Config{})
	pad := strings.Repeat("x", 60<<10)
	for i := range 5 {
		s.set(t, "s", "g", strconv.Itoa(i), pad)
	}
	c := s.dial(t, groupPath("s", "g"), nil)
	f := c.read()
	must(t, f.kind() == "sync" && len(f.event(t).IDs) == 5, "big sync: %.200s", f.Raw)
	c2 := s.dial(t, groupPath("s", "g", "since=0"), nil)
	for i := 1; i <= 5; i++ {
		must(t, c2.read().Seq == uint64(i), "replay %d", i)
	}
	s.set(t, "s", "g", "live", 1)
	must(t, c.read().Seq == 6 && c2.read().Seq == 6, "live after catch-up")
}

// A subscription that cannot get its snapshot ends with an error frame
// instead of going live without one; a socket opened for it alone closes.
func TestSnapshotFailure(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.e.RegisterFunction(streammodule.CustomFunctionID("list", "broken"), "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("backend down")
	}))
	c := s.dial(t, groupPath("broken", "g"), nil)
	f := c.read()
	must(t, f.Type == "error" && f.Code == "snapshot_failed", "error frame: %s", f.Raw)
	must(t, c.closed() == websocket.StatusInternalError, "closed with %v", c.err)

	m := s.dial(t, "/", nil)
	m.send(join("b", "broken", "g"))
	f = m.read()
	must(t, f.Type == "error" && f.Code == "snapshot_failed" && *f.SubscriptionID == "b", "mux error frame: %s", f.Raw)
	m.send(join("ok", "fine", "g"))
	must(t, m.read().kind() == "sync", "the socket still serves")
	s.call(t, "stream::send", map[string]any{"stream_name": "broken", "group_id": "g", "type": "x", "data": 1})
	m.quiet(100 * time.Millisecond)
}

// A denied join on a socket opened for that subscription closes it.
func TestDeniedGroupSocketCloses(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.e.RegisterFunction("deny", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return []byte(`{"unauthorized":true}`), nil
	}))
	sess, err := s.e.Attach(engine.WorkerInfo{Name: "t"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RegisterTrigger(context.Background(), engine.Trigger{ID: "d", Type: "stream:join", FunctionID: "deny"}); err != nil {
		t.Fatal(err)
	}
	c := s.dial(t, groupPath("s", "g"), nil)
	must(t, c.read().kind() == "unauthorized", "unauthorized frame")
	must(t, c.closed() == websocket.StatusPolicyViolation, "closed with %v", c.err)
}

// A gateway that reaches the module only through engine functions (as
// trine gateway does from its own process) serves the same protocol.
func TestRemoteBackend(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	gw, err := gateway.New(gateway.Config{Backend: gateway.RemoteBackend(s.e), Events: s.sub})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { gw.Close(); srv.Close() })
	rs := &stack{srv: srv}
	s.set(t, "s", "g", "a", 1)
	c := rs.dial(t, groupPath("s", "g"), nil)
	f := c.read()
	must(t, f.kind() == "sync" && f.Seq == 1 && string(f.event(t).Data) == "[1]", "remote sync: %s", f.Raw)
	s.set(t, "s", "g", "b", 2)
	must(t, c.read().Seq == 2, "live event")
	r := rs.dial(t, groupPath("s", "g", "since=1"), nil)
	must(t, r.read().Seq == 2, "remote replay")
	r = rs.dial(t, groupPath("s", "g", "since=9"), nil)
	must(t, r.read().event(t).Resync, "remote resync")

	var leaves atomic.Int32
	s.e.RegisterFunction("deny", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		if strings.Contains(string(c.Payload), `"group_id":"secret"`) {
			return []byte(`{"unauthorized":true}`), nil
		}
		return nil, nil
	}))
	s.e.RegisterFunction("left", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		leaves.Add(1)
		return nil, nil
	}))
	sess, err := s.e.Attach(engine.WorkerInfo{Name: "t"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	sess.RegisterTrigger(context.Background(), engine.Trigger{ID: "j", Type: "stream:join", FunctionID: "deny"})
	sess.RegisterTrigger(context.Background(), engine.Trigger{ID: "l", Type: "stream:leave", FunctionID: "left"})
	m := rs.dial(t, "/", nil)
	m.send(join("x", "s", "secret"))
	must(t, m.read().kind() == "unauthorized", "remote join denied")
	m.send(join("y", "s", "g"))
	must(t, m.read().kind() == "sync", "remote join allowed")
	m.send(leave("y", "s", "g"))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the leave handler ran through the engine", func() bool { return leaves.Load() == 1 }))
}

// Close does not wait out the write timeout of a socket whose peer stopped
// reading: it cuts it.
func TestCloseCutsStalledSockets(t *testing.T) {
	s := newStack(t, gateway.Config{WriteTimeout: time.Minute, QueueBytes: 64 << 20}, streammodule.Config{})
	rawUpgrade(t, s, groupPath("s", "g"))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the stalled client connects", func() bool { return s.gw.Stats().Conns == 1 }))
	pad := strings.Repeat("x", 64<<10)
	for i := range 100 { // far more than the kernel buffers of an 8 KiB receiver
		s.set(t, "s", "g", strconv.Itoa(i%4), pad)
	}
	time.Sleep(100 * time.Millisecond) // the writer is now blocked in write
	start := time.Now()
	s.gw.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a stalled socket", d)
	}
}

// A multiplexed socket that never reads and sends hundreds of joins of a
// large group holds a few snapshots, not hundreds (1,000 joins of a 4 MB
// group used to take the engine from 38 MB to 6.5 GB).
func TestJoinFloodFromAPeerThatNeverReads(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	pad := strings.Repeat("x", 128<<10)
	for i := range 8 { // a 1 MiB group
		s.set(t, "big", "g", strconv.Itoa(i), pad)
	}
	heap0 := liveHeap()
	nc := rawUpgrade(t, s, "/")
	br := bufio.NewReader(nc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v", err)
	}
	for i := range 300 {
		msg := fmt.Sprintf(`{"type":"join","data":{"subscriptionId":"s%d","streamName":"big","groupId":"g"}}`, i)
		_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if err := ws.WriteFrame(nc, ws.MaskFrame(ws.NewTextFrame([]byte(msg)))); err != nil {
			break
		}
	}
	time.Sleep(time.Second) // let every join that can run, run
	grown := liveHeap() - heap0
	t.Logf("heap grew by %d MB with 300 joins of a 1 MiB group pending", grown>>20)
	if grown > 48<<20 {
		t.Fatalf("heap grew by %d MB: joins of a socket that does not read are not bounded", grown>>20)
	}
}
