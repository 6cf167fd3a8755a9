package trine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/streamtest"
	"github.com/trinehq/trine/streammodule"
	trine "github.com/trinehq/trine/worker-sdk"
)

// gwStack is an engine with the StreamModule, an embedded NATS server and a
// stream gateway served over loopback HTTP. The gateway can be stopped and
// replaced on the same address, as a restart would.
type gwStack struct {
	st   *streamtest.Stack
	e    *engine.Engine
	m    *streammodule.Module
	gcfg gateway.Config
	srv  *httptest.Server
	url  string

	mu sync.Mutex
	gw *gateway.Gateway // nil while down: handshakes get 503
}

func newGWStack(t *testing.T, gcfg gateway.Config, mcfg streammodule.Config) *gwStack {
	t.Helper()
	return newGWStackServer(t, gcfg, mcfg, false)
}

// newGWStackServer is newGWStack, its gateway served over TLS (wss://,
// trusted by s.srv.Client()) when useTLS is set.
func newGWStackServer(t *testing.T, gcfg gateway.Config, mcfg streammodule.Config, useTLS bool) *gwStack {
	t.Helper()
	st := streamtest.Start(t, mcfg)
	e, m := st.Engine, st.Module
	gcfg.Backend, gcfg.Events, gcfg.Caller = m, st.Events, e
	s := &gwStack{st: st, e: e, m: m, gcfg: gcfg}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		gw := s.gw
		s.mu.Unlock()
		if gw == nil {
			http.Error(w, "gateway restarting", http.StatusServiceUnavailable)
			return
		}
		gw.ServeHTTP(w, r)
	}))
	s.url = "ws://" + s.srv.Listener.Addr().String()
	if useTLS {
		s.srv.StartTLS()
		s.url = "wss://" + s.srv.Listener.Addr().String()
	} else {
		s.srv.Start()
	}
	s.up(t)
	t.Cleanup(func() {
		s.down(t)
		s.srv.Close()
	})
	return s
}

// up starts a new gateway.
func (s *gwStack) up(t testing.TB) {
	t.Helper()
	gw, err := gateway.New(s.gcfg)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.gw = gw
	s.mu.Unlock()
}

// down closes the gateway: its clients get 1001, new ones 503.
func (s *gwStack) down(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	gw := s.gw
	s.gw = nil
	s.mu.Unlock()
	if gw != nil {
		gw.Close()
	}
}

func (s *gwStack) restart(t testing.TB) { s.down(t); s.up(t) }

func (s *gwStack) stats() gateway.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gw == nil {
		return gateway.Stats{}
	}
	return s.gw.Stats()
}

func (s *gwStack) call(t testing.TB, fn string, in any) []byte {
	t.Helper()
	return s.st.Call(t, fn, in)
}

// set writes an item and returns the sequence of the change.
func (s *gwStack) set(t testing.TB, stream, group, item string, data any) uint64 {
	t.Helper()
	out := s.call(t, "stream::set", map[string]any{"stream_name": stream, "group_id": group, "item_id": item, "data": data})
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Seq == 0 {
		t.Fatalf("stream::set answered %s", out)
	}
	return r.Seq
}

func (s *gwStack) del(t testing.TB, stream, group, item string) {
	t.Helper()
	s.call(t, "stream::delete", map[string]any{"stream_name": stream, "group_id": group, "item_id": item})
}

// list returns the group's items and the sequence they reflect.
func (s *gwStack) list(t testing.TB, stream, group string) (map[string]string, uint64) {
	t.Helper()
	out := s.call(t, "stream::list", map[string]any{"stream_name": stream, "group_id": group, "include_ids": true})
	var page struct {
		Items []struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		} `json:"items"`
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(out, &page); err != nil {
		t.Fatalf("stream::list answered %s: %v", out, err)
	}
	items := map[string]string{}
	for _, it := range page.Items {
		items[it.ID] = string(it.Data)
	}
	return items, page.Seq
}

// subscribe subscribes with a short backoff and closes the subscription
// when the test ends.
func subscribe(t *testing.T, base, stream, group string, opts ...trine.SubscribeOption) *trine.Subscription {
	t.Helper()
	opts = append([]trine.SubscribeOption{trine.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond)}, opts...)
	sub, err := trine.Subscribe(t.Context(), base, stream, group, opts...)
	if err != nil {
		t.Fatalf("Subscribe(%s, %q, %q) = %v", base, stream, group, err)
	}
	t.Cleanup(func() {
		if err := sub.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return sub
}

// next returns the next event, failing the test after 10s or if the
// subscription ends.
func next(t *testing.T, sub *trine.Subscription) trine.StreamEvent {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatalf("subscription ended: %v", sub.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no event within 10s (last seq %d)", sub.LastSeq())
	}
	return trine.StreamEvent{}
}

// quiet asserts that no event arrives for d.
func quiet(t *testing.T, sub *trine.Subscription, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if ok {
			t.Fatalf("unexpected event %s", ev.Raw)
		}
		t.Fatalf("subscription ended: %v", sub.Err())
	case <-time.After(d):
	}
}

// ended waits for the subscription to end on its own and returns Err.
func ended(t *testing.T, sub *trine.Subscription) error {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-sub.Events():
			if !ok {
				return sub.Err()
			}
		case <-deadline:
			t.Fatal("subscription still running after 10s")
		}
	}
}

// state is a client-side copy of a group, kept from its events.
type state map[string]string

func (st state) apply(t *testing.T, ev trine.StreamEvent) {
	t.Helper()
	switch ev.Type {
	case "sync":
		var vals []json.RawMessage
		if err := json.Unmarshal(ev.Data, &vals); err != nil || len(vals) != len(ev.ItemIDs) {
			t.Fatalf("sync %s: %d ids, %v", ev.Raw, len(ev.ItemIDs), err)
		}
		clear(st)
		for i, id := range ev.ItemIDs {
			st[id] = string(vals[i])
		}
	case "create", "update":
		st[ev.ItemID] = string(ev.Data)
	case "delete":
		delete(st, ev.ItemID)
	}
}

func TestSubscribeGroup(t *testing.T) {
	s := newGWStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "todos", "inbox", "b", map[string]any{"t": "B"})
	s.set(t, "todos", "inbox", "a", map[string]any{"t": "A"})
	before := time.Now().Add(-time.Second)
	sub := subscribe(t, s.url, "todos", "inbox")
	ev := next(t, sub)
	if ev.Type != "sync" || ev.Seq != 2 || ev.Stream != "todos" || ev.Group != "inbox" || ev.ItemID != "" ||
		string(ev.Data) != `[{"t":"A"},{"t":"B"}]` || !slices.Equal(ev.ItemIDs, []string{"a", "b"}) || ev.Resync ||
		ev.Timestamp.Before(before) || !json.Valid(ev.Raw) {
		t.Fatalf("sync: %+v", ev)
	}
	if sub.LastSeq() != 2 {
		t.Fatalf("LastSeq after sync = %d", sub.LastSeq())
	}

	s.set(t, "todos", "inbox", "c", 1)
	s.set(t, "todos", "inbox", "c", 2)
	s.del(t, "todos", "inbox", "c")
	s.call(t, "stream::send", map[string]any{"stream_name": "todos", "group_id": "inbox", "type": "typing", "data": "ann"})
	s.set(t, "todos", "other", "x", 1) // another group: never delivered
	want := []struct{ typ, item, data, eventType string }{
		{"create", "c", "1", ""}, {"update", "c", "2", ""}, {"delete", "c", "", ""}, {"event", "", `"ann"`, "typing"},
	}
	for i, w := range want {
		ev := next(t, sub)
		if ev.Type != w.typ || ev.Seq != uint64(3+i) || ev.ItemID != w.item || ev.EventType != w.eventType ||
			(w.data != "" && string(ev.Data) != w.data) || ev.Stream != "todos" || ev.Group != "inbox" || ev.ItemIDs != nil {
			t.Fatalf("event %d: %+v (raw %s)", i, ev, ev.Raw)
		}
	}
	quiet(t, sub, 100*time.Millisecond)
	if sub.LastSeq() != 6 || sub.Err() != nil {
		t.Fatalf("LastSeq %d, Err %v", sub.LastSeq(), sub.Err())
	}
	if st := sub.Stats(); st.Connects != 1 || st.Duplicates != 0 || st.Malformed != 0 || st.Resyncs != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSubscribeItem(t *testing.T) {
	s := newGWStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "s", "g", "me", "v1")
	sub := subscribe(t, s.url, "s", "g", trine.WithItem("me"))
	ev := next(t, sub)
	if ev.Type != "sync" || ev.ItemID != "me" || string(ev.Data) != `"v1"` || ev.ItemIDs != nil || ev.Seq != 1 {
		t.Fatalf("item sync: %+v", ev)
	}
	s.set(t, "s", "g", "other", 1)
	s.call(t, "stream::send", map[string]any{"stream_name": "s", "group_id": "g", "type": "x", "data": 1})
	s.call(t, "stream::send", map[string]any{"stream_name": "s", "group_id": "g", "type": "to-me", "data": 1, "id": "me"})
	s.set(t, "s", "g", "me", "v2")
	ev = next(t, sub)
	if ev.Type != "event" || ev.Seq != 4 || ev.EventType != "to-me" || ev.ItemID != "me" || string(ev.Data) != "1" {
		t.Fatalf("targeted event: %+v", ev)
	}
	ev = next(t, sub)
	if ev.Type != "update" || ev.Seq != 5 || string(ev.Data) != `"v2"` {
		t.Fatalf("item update: %+v", ev)
	}
	quiet(t, sub, 100*time.Millisecond)

	// A missing item syncs as null.
	sub = subscribe(t, s.url, "s", "g", trine.WithItem("nobody"))
	if ev := next(t, sub); ev.Type != "sync" || string(ev.Data) != "null" || ev.ItemID != "nobody" {
		t.Fatalf("missing item sync: %+v", ev)
	}
}

func TestSubscribeSince(t *testing.T) {
	s := newGWStack(t, gateway.Config{}, streammodule.Config{})
	for i := range 3 {
		s.set(t, "s", "g", "a", i) // seqs 1..3
	}
	sub := subscribe(t, s.url, "s", "g", trine.WithSince(1))
	// LastSeq follows what is delivered on Events, which the consumer may
	// not have read yet: from the since asked for up to the last replayed.
	if n := sub.LastSeq(); n < 1 || n > 3 {
		t.Fatalf("LastSeq before any event read = %d, want 1 to 3", n)
	}
	for _, want := range []uint64{2, 3} {
		if ev := next(t, sub); ev.Type != "update" || ev.Seq != want {
			t.Fatalf("replayed %d: %+v", want, ev)
		}
		if n := sub.LastSeq(); n < want {
			t.Fatalf("LastSeq %d is behind event %d, which the consumer has", n, want)
		}
	}
	s.set(t, "s", "g", "b", 9)
	if ev := next(t, sub); ev.Type != "create" || ev.Seq != 4 {
		t.Fatalf("live after replay: %+v", ev)
	}
	// Current already: nothing to replay.
	sub = subscribe(t, s.url, "s", "g", trine.WithSince(4))
	quiet(t, sub, 100*time.Millisecond)
	s.set(t, "s", "g", "b", 10)
	if ev := next(t, sub); ev.Seq != 5 {
		t.Fatalf("current client: %+v", ev)
	}
}

// Any name works: path-escaped, or in the query when it is "." or "..".
func TestSubscribeHostileNames(t *testing.T) {
	s := newGWStack(t, gateway.Config{}, streammodule.Config{})
	for _, n := range [][2]string{{"a/b", "c d"}, {".", ".."}, {"x//y", "/z/"}, {"q?#%25&", "ü 🙂"}, {"..", "...."}} {
		s.set(t, n[0], n[1], "i", 1)
		sub := subscribe(t, s.url, n[0], n[1], trine.WithItem("i/./j"))
		ev := next(t, sub)
		if ev.Type != "sync" || ev.Stream != n[0] || ev.Group != n[1] || ev.ItemID != "i/./j" || string(ev.Data) != "null" {
			t.Fatalf("%q: %+v", n, ev)
		}
		s.set(t, n[0], n[1], "i/./j", 2)
		if ev := next(t, sub); ev.Type != "create" || ev.ItemID != "i/./j" {
			t.Fatalf("%q: %+v", n, ev)
		}
	}
}

// The handshake URL: the base's path and query kept, names escaped once.
func TestSubscribeURL(t *testing.T) {
	f := newFakeGateway(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if c := accept(t, w, r); c != nil {
			send(c, frame(1, "", `{"type":"sync","data":[]}`))
			waitClosed(c)
		}
	})
	for _, tc := range []struct{ base, stream, group, item, want string }{
		{f.url, "todos", "inbox", "", "/stream/todos/inbox"},
		{f.url + "/", "a/b", "c d%", "x y", "/stream/a%2Fb/c%20d%25?item_id=x+y"},
		{f.url + "/gw/?token=t", "ü", "?#", "", "/gw/stream/%C3%BC/%3F%23?token=t"},
		{f.url, ".", "..", "", "/stream?group=..&stream=."},
		{f.url + "/gw", "s", ".", "i", "/gw/stream?group=.&item_id=i&stream=s"},
	} {
		n := len(f.requests())
		sub := subscribe(t, tc.base, tc.stream, tc.group, trine.WithItem(tc.item))
		next(t, sub)
		sub.Close()
		if got := f.requests()[n].URL.RequestURI(); got != tc.want {
			t.Errorf("%q %q %q: %s, want %s", tc.stream, tc.group, tc.item, got, tc.want)
		}
	}
}

// collector reads a subscription's events on its own goroutine.
type collector struct {
	mu     sync.Mutex
	events []trine.StreamEvent
	done   chan struct{}
}

func collect(t *testing.T, sub *trine.Subscription) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ev := range sub.Events() {
			c.mu.Lock()
			c.events = append(c.events, ev)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { sub.Close(); <-c.done })
	return c
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// waitSeq waits until an event with sequence seq or later was collected.
func (c *collector) waitSeq(t *testing.T, sub *trine.Subscription, seq uint64) []trine.StreamEvent {
	t.Helper()
	poll.CheckFor(t, 20*time.Second, poll.Holds(fmt.Sprintf("seq %d (at %d, err %v)", seq, sub.LastSeq(), sub.Err()), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.events) > 0 && c.events[len(c.events)-1].Seq >= seq
	}))
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// writer sets and deletes items of a group until stopped; stop returns the
// group's sequence then.
func writer(t *testing.T, s *gwStack, stream, group string) (stop func() uint64) {
	quit := make(chan struct{})
	done := make(chan struct{})
	write := func(fn string, in map[string]any) bool {
		in["stream_name"], in["group_id"] = stream, group
		p, _ := json.Marshal(in)
		if _, err := s.e.Trigger(context.Background(), engine.Call{FunctionID: fn, Payload: p}); err != nil {
			t.Errorf("%s: %v", fn, err)
			return false
		}
		return true
	}
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			if !write("stream::set", map[string]any{"item_id": strconv.Itoa(i % 7), "data": i}) {
				return
			}
			if i%5 == 0 && !write("stream::delete", map[string]any{"item_id": strconv.Itoa((i + 3) % 7)}) {
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	var once sync.Once
	var final uint64
	stop = func() uint64 {
		once.Do(func() {
			close(quit)
			<-done
			_, final = s.list(t, stream, group)
		})
		return final
	}
	t.Cleanup(func() {
		select {
		case <-quit:
		default:
			close(quit)
		}
		<-done
	})
	return stop
}

// checkExactlyOnce checks that events are a sync and then every later
// sequence up to final exactly once, in order, and that they rebuild the
// store's state.
func checkExactlyOnce(t *testing.T, s *gwStack, events []trine.StreamEvent, stream, group string, final uint64) {
	t.Helper()
	if len(events) == 0 || events[0].Type != "sync" {
		t.Fatalf("first event is not a sync: %+v", events)
	}
	st := state{}
	st.apply(t, events[0])
	for i, ev := range events[1:] {
		if ev.Type == "sync" || ev.Resync {
			t.Fatalf("event %d: unexpected sync %s", i+1, ev.Raw)
		}
		if want := events[i].Seq + 1; ev.Seq != want {
			t.Fatalf("event %d: seq %d after %d (gap or duplicate)", i+1, ev.Seq, events[i].Seq)
		}
		st.apply(t, ev)
	}
	if last := events[len(events)-1].Seq; last != final {
		t.Fatalf("last seq %d, want %d", last, final)
	}
	items, seq := s.list(t, stream, group)
	if seq != final || fmt.Sprint(items) != fmt.Sprint(map[string]string(st)) {
		t.Fatalf("client state %v at %d, store %v at %d", st, final, items, seq)
	}
}

// Writes go on while the gateway restarts three times: the client resumes
// each time and ends with every sequence exactly once, without resync.
func TestSubscribeResumesAcrossGatewayRestarts(t *testing.T) {
	s := newGWStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "race", "g", "seed", 0)
	sub := subscribe(t, s.url, "race", "g")
	c := collect(t, sub)
	stop := writer(t, s, "race", "g")
	for range 3 {
		n := c.count()
		poll.CheckFor(t, 10*time.Second, poll.Holds("events flowing", func() bool { return c.count() >= n+20 }))
		s.restart(t)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("events after the last restart", func() bool { return sub.Stats().Connects == 4 }))
	final := stop()
	events := c.waitSeq(t, sub, final)
	checkExactlyOnce(t, s, events, "race", "g", final)
	if st := sub.Stats(); st.Connects != 4 || st.Resyncs != 0 || st.Malformed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The same across abrupt network failures (no close frame).
func TestSubscribeResumesAcrossNetworkCuts(t *testing.T) {
	s := newGWStack(t, gateway.Config{}, streammodule.Config{})
	p := enginetest.NewProxy(t, s.srv.Listener.Addr().String())
	s.set(t, "race", "g", "seed", 0)
	sub := subscribe(t, "http://"+p.Addr, "race", "g")
	c := collect(t, sub)
	stop := writer(t, s, "race", "g")
	for i := range 3 {
		n := c.count()
		poll.CheckFor(t, 10*time.Second, poll.Holds("events flowing", func() bool { return c.count() >= n+20 }))
		p.Cut()
		poll.CheckFor(t, 10*time.Second, poll.Holds("reconnected", func() bool { return sub.Stats().Connects == int64(i+2) }))
	}
	final := stop()
	events := c.waitSeq(t, sub, final)
	checkExactlyOnce(t, s, events, "race", "g", final)
	if st := sub.Stats(); st.Resyncs != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// While the gateway is down, writes happen. History that covers them is
// replayed; history too short gives a resync snapshot that replaces the
// state.
func TestSubscribeReplayOrResync(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history int
	}{{"replay", 0}, {"resync", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newGWStack(t, gateway.Config{}, streammodule.Config{HistorySize: tc.history})
			s.set(t, "s", "g", "a", 1)
			s.set(t, "s", "g", "b", 2)
			sub := subscribe(t, s.url, "s", "g")
			st := state{}
			st.apply(t, next(t, sub))
			s.down(t)
			s.set(t, "s", "g", "c", 3)        // 3
			s.del(t, "s", "g", "a")           // 4
			s.set(t, "s", "g", "b", 20)       // 5
			s.set(t, "s", "g", "d", 4)        // 6
			time.Sleep(50 * time.Millisecond) // a few refused reconnects
			s.up(t)
			if tc.history == 0 {
				for i, want := range []string{"create", "delete", "update", "create"} {
					ev := next(t, sub)
					if ev.Type != want || ev.Seq != uint64(3+i) {
						t.Fatalf("replayed %s: %+v", want, ev)
					}
					st.apply(t, ev)
				}
			} else {
				ev := next(t, sub)
				if ev.Type != "sync" || !ev.Resync || ev.Seq != 6 || !slices.Equal(ev.ItemIDs, []string{"b", "c", "d"}) || string(ev.Data) != "[20,3,4]" {
					t.Fatalf("resync: %+v (raw %s)", ev, ev.Raw)
				}
				st.apply(t, ev)
			}
			s.set(t, "s", "g", "e", 5)
			ev := next(t, sub)
			if ev.Type != "create" || ev.Seq != 7 {
				t.Fatalf("live after recovery: %+v", ev)
			}
			st.apply(t, ev)
			items, _ := s.list(t, "s", "g")
			if fmt.Sprint(items) != fmt.Sprint(map[string]string(st)) {
				t.Fatalf("client state %v, store %v", st, items)
			}
			want := int64(0)
			if tc.history == 2 {
				want = 1
			}
			if got := sub.Stats(); got.Resyncs != want || got.Connects != 2 {
				t.Fatalf("stats %+v", got)
			}
		})
	}
}

// A consumer that stops reading makes the client stop reading; the gateway
// drops the connection (1008) and the client resumes with since once the
// consumer reads again. History is kept short here, so the gap is filled by
// a resync (a replay as long as the queue that overflowed could overflow it
// again: see the report on the gateway).
func TestSubscribeSlowConsumerRecovers(t *testing.T) {
	s := newGWStack(t, gateway.Config{QueueBytes: 1 << 20}, streammodule.Config{HistorySize: 4})
	// A small receive buffer, so that the gateway's queue fills soon.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	sub := subscribe(t, s.url, "s", "g", trine.WithBuffer(1),
		trine.WithHTTPClient(&http.Client{Transport: tr}))
	st := state{}
	ev := next(t, sub)
	if ev.Type != "sync" {
		t.Fatalf("sync: %+v", ev)
	}
	st.apply(t, ev)
	pad := strings.Repeat("x", 64<<10)
	n := 0
	for ; s.stats().SlowConsumerCloses == 0; n++ {
		if n >= 2000 {
			t.Fatal("the gateway never dropped the slow client")
		}
		s.set(t, "s", "g", strconv.Itoa(n%3), pad+strconv.Itoa(n))
	}
	final := s.set(t, "s", "g", "last", 1)
	t.Logf("the gateway dropped the client after %d large events", n)
	resynced := false
	for last := ev.Seq; last < final; {
		ev := next(t, sub)
		switch {
		case ev.Type == "sync" && ev.Resync && !resynced && ev.Seq > last:
			resynced = true
		case ev.Type == "sync" || ev.Seq != last+1:
			t.Fatalf("%s seq %d after %d", ev.Type, ev.Seq, last)
		}
		last = ev.Seq
		st.apply(t, ev)
	}
	if got := sub.Stats(); got.Connects != 2 || got.Resyncs != 1 {
		t.Fatalf("stats %+v", got)
	}
	items, _ := s.list(t, "s", "g")
	if !maps.Equal(items, st) {
		t.Fatalf("state differs: %d items vs %d", len(st), len(items))
	}
}

func TestSubscribeAuth(t *testing.T) {
	s := newGWStack(t, gateway.Config{AuthFunction: "auth::check"}, streammodule.Config{})
	var calls atomic.Int64
	var revoked atomic.Bool
	err := s.e.RegisterFunction("auth::check", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		calls.Add(1)
		var in struct {
			Headers     map[string]string   `json:"headers"`
			QueryParams map[string][]string `json:"query_params"`
		}
		_ = json.Unmarshal(c.Payload, &in)
		if !revoked.Load() && slices.Equal(in.QueryParams["token"], []string{"good"}) && in.Headers["x-user"] == "ann" {
			return []byte(`{"context":{"user":"ann"}}`), nil
		}
		return nil, errors.New("bad token")
	}))
	if err != nil {
		t.Fatal(err)
	}
	// Refused: Subscribe fails at once and nothing retries.
	_, err = trine.Subscribe(t.Context(), s.url, "s", "g", trine.WithQuery(url.Values{"token": {"bad"}}),
		trine.WithReconnectBackoff(time.Millisecond, time.Millisecond))
	if !errors.Is(err, trine.ErrUnauthorized) {
		t.Fatalf("bad token: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("auth function called %d times", n)
	}

	// Allowed: query and headers reach the auth function.
	sub := subscribe(t, s.url, "s", "g", trine.WithQuery(url.Values{"token": {"good"}}),
		trine.WithHeader(http.Header{"X-User": {"ann"}}))
	if ev := next(t, sub); ev.Type != "sync" {
		t.Fatalf("sync: %+v", ev)
	}
	// Revoked while disconnected: the reconnect is refused and the
	// subscription ends with that error.
	revoked.Store(true)
	before := calls.Load()
	s.restart(t)
	if err := ended(t, sub); !errors.Is(err, trine.ErrUnauthorized) {
		t.Fatalf("revoked: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load() - before; n != 1 {
		t.Fatalf("auth function called %d times after the restart", n)
	}
}

func TestSubscribeOriginRefused(t *testing.T) {
	s := newGWStack(t, gateway.Config{AllowedOrigins: []string{"https://app.example"}}, streammodule.Config{})
	_, err := trine.Subscribe(t.Context(), s.url, "s", "g", trine.WithHeader(http.Header{"Origin": {"https://evil.example"}}))
	if !errors.Is(err, trine.ErrForbidden) {
		t.Fatalf("cross-site origin: %v", err)
	}
	sub := subscribe(t, s.url, "s", "g", trine.WithHeader(http.Header{"Origin": {"https://app.example"}}))
	if ev := next(t, sub); ev.Type != "sync" {
		t.Fatalf("allowed origin: %+v", ev)
	}
}

type nopPeer struct{}

func (nopPeer) Invoke(context.Context, engine.Invocation) error { return errors.New("no worker") }
func (nopPeer) Cancel(string)                                   {}
func (nopPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

// A join denied by a stream:join handler delivers the unauthorized frame
// and ends the subscription; it does not reconnect.
func TestSubscribeJoinDenied(t *testing.T) {
	s := newGWStack(t, gateway.Config{}, streammodule.Config{})
	err := s.e.RegisterFunction("auth::join", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		var p struct {
			GroupID string `json:"group_id"`
		}
		_ = json.Unmarshal(c.Payload, &p)
		if p.GroupID == "deny" {
			return []byte(`{"unauthorized":true}`), nil
		}
		return []byte(`{}`), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.e.Attach(engine.WorkerInfo{Name: "t"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RegisterTrigger(context.Background(), engine.Trigger{ID: "j", Type: "stream:join", FunctionID: "auth::join", Config: json.RawMessage(`{"stream_name":"s"}`)}); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, s.url, "s", "deny")
	if ev := next(t, sub); ev.Type != "unauthorized" || ev.Group != "deny" || ev.Seq != 0 {
		t.Fatalf("denied: %+v", ev)
	}
	if err := ended(t, sub); !errors.Is(err, trine.ErrUnauthorized) {
		t.Fatalf("denied join: %v", err)
	}
	if st := sub.Stats(); st.Connects != 1 {
		t.Fatalf("stats %+v", st)
	}
	ok := subscribe(t, s.url, "s", "ok")
	if ev := next(t, ok); ev.Type != "sync" {
		t.Fatalf("allowed: %+v", ev)
	}
}

// fakeGateway serves scripted WebSocket connections and HTTP answers.
type fakeGateway struct {
	srv  *httptest.Server
	url  string
	mu   sync.Mutex
	reqs []*http.Request
}

// newFakeGateway calls serve for each request with its index; serve may
// answer with an HTTP error or accept the WebSocket and script it.
func newFakeGateway(t *testing.T, serve func(n int, w http.ResponseWriter, r *http.Request)) *fakeGateway {
	f := &fakeGateway{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, r)
		f.mu.Unlock()
		serve(n, w, r)
	}))
	f.url = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGateway) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func accept(t *testing.T, w http.ResponseWriter, r *http.Request) *websocket.Conn {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		t.Errorf("accept: %v", err)
		return nil
	}
	return c
}

func send(c *websocket.Conn, frames ...string) {
	for _, f := range frames {
		if err := c.Write(context.Background(), websocket.MessageText, []byte(f)); err != nil {
			return
		}
	}
}

// waitClosed reads until the client goes away.
func waitClosed(c *websocket.Conn) {
	for {
		if _, _, err := c.Read(context.Background()); err != nil {
			c.CloseNow()
			return
		}
	}
}

func frame(seq uint64, id, event string) string {
	idJSON := "null"
	if id != "" {
		idJSON = strconv.Quote(id)
	}
	return fmt.Sprintf(`{"seq":%d,"id":%s,"type":"stream","timestamp":1700000000000,"streamName":"s","groupId":"g","event":%s}`, seq, idJSON, event)
}

// The resume protocol against a scripted gateway: since on reconnects,
// duplicates dropped, malformed frames skipped, a resync resetting LastSeq.
func TestSubscribeFrames(t *testing.T) {
	f := newFakeGateway(t, func(n int, w http.ResponseWriter, r *http.Request) {
		c := accept(t, w, r)
		if c == nil {
			return
		}
		switch n {
		case 0:
			send(c, `not json`, `{"type":"pong"}`, `{"seq":1}`,
				frame(5, "", `{"type":"sync","data":[1,2],"ids":["a","b"]}`),
				frame(6, "a", `{"type":"update","data":10}`),
				frame(7, "a", `{"type":"event"}`), // no inner event: malformed
				frame(7, "", `{"type":"event","event":{"type":"ping","data":{"x":1}}}`))
			c.Close(websocket.StatusGoingAway, "restart")
		case 1:
			send(c, frame(6, "a", `{"type":"update","data":10}`), frame(7, "", `{"type":"event","event":{"type":"ping","data":{"x":1}}}`),
				frame(8, "b", `{"type":"delete","data":2}`))
			c.Close(websocket.StatusPolicyViolation, "slow consumer")
		case 2:
			send(c, `{"type":"error","code":"snapshot_failed","message":"boom"}`)
			waitClosed(c) // the client drops the connection itself
		case 3:
			// The store was reset: a resync at a lower sequence.
			send(c, frame(3, "", `{"type":"sync","data":[7],"ids":["z"],"resync":true}`), frame(4, "z", `{"type":"update","data":8}`))
			waitClosed(c)
		}
	})
	sub := subscribe(t, f.url+"/base/", "s", "g", trine.WithQuery(url.Values{"token": {"t1"}, "since": {"99"}}),
		trine.WithHeader(http.Header{"Cookie": {"sid=1"}}))
	want := []struct {
		typ    string
		seq    uint64
		item   string
		data   string
		resync bool
	}{
		{"sync", 5, "", "[1,2]", false}, {"update", 6, "a", "10", false}, {"event", 7, "", `{"x":1}`, false},
		{"delete", 8, "b", "2", false}, {"sync", 3, "", "[7]", true}, {"update", 4, "z", "8", false},
	}
	for i, w := range want {
		ev := next(t, sub)
		if ev.Type != w.typ || ev.Seq != w.seq || ev.ItemID != w.item || string(ev.Data) != w.data || ev.Resync != w.resync ||
			ev.Timestamp.UnixMilli() != 1700000000000 || ev.Stream != "s" || ev.Group != "g" {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if ev.Type == "event" && ev.EventType != "ping" {
			t.Fatalf("event type %q", ev.EventType)
		}
	}
	if sub.LastSeq() != 4 {
		t.Fatalf("LastSeq %d", sub.LastSeq())
	}
	if st := sub.Stats(); st.Connects != 4 || st.Duplicates != 2 || st.Malformed != 3 || st.Resyncs != 1 {
		t.Fatalf("stats %+v", st)
	}
	reqs := f.requests()
	for i, wantSince := range []string{"", "7", "8", "8"} {
		r := reqs[i]
		q := r.URL.Query()
		if r.URL.Path != "/base/stream/s/g" || q.Get("since") != wantSince || q.Get("token") != "t1" || r.Header.Get("Cookie") != "sid=1" {
			t.Fatalf("request %d: %s %v", i, r.URL, r.Header)
		}
	}
}

func TestSubscribeHandshakeStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{
		{http.StatusBadRequest, trine.ErrInvalidArgument},
		{http.StatusNotFound, trine.ErrInvalidArgument},
		{http.StatusUnauthorized, trine.ErrUnauthorized},
		{http.StatusForbidden, trine.ErrForbidden},
		{http.StatusServiceUnavailable, trine.ErrUnavailable},
		{http.StatusTooManyRequests, trine.ErrOverloaded},
	} {
		f := newFakeGateway(t, func(_ int, w http.ResponseWriter, _ *http.Request) { http.Error(w, "nope", tc.status) })
		_, err := trine.Subscribe(t.Context(), f.url, "s", "g")
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("%d: %v", tc.status, err)
		}
		if n := len(f.requests()); n != 1 {
			t.Errorf("%d: %d requests", tc.status, n)
		}
	}
	// Later, transient refusals are retried and permanent ones end it.
	var status atomic.Int64
	f := newFakeGateway(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			c := accept(t, w, r)
			send(c, frame(1, "", `{"type":"sync","data":[]}`))
			c.Close(websocket.StatusGoingAway, "")
			return
		}
		if n < 4 {
			http.Error(w, "later", http.StatusBadGateway)
			return
		}
		http.Error(w, "go away", int(status.Load()))
	})
	status.Store(http.StatusUnauthorized)
	sub := subscribe(t, f.url, "s", "g")
	next(t, sub)
	if err := ended(t, sub); !errors.Is(err, trine.ErrUnauthorized) || !strings.Contains(err.Error(), "go away") {
		t.Fatalf("ended with %v", err)
	}
	if n := len(f.requests()); n != 5 {
		t.Fatalf("%d requests", n)
	}
}

func TestSubscribeReadLimit(t *testing.T) {
	f := newFakeGateway(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		c := accept(t, w, r)
		send(c, frame(1, "", `{"type":"sync","data":["`+strings.Repeat("x", 2000)+`"],"ids":["a"]}`))
		waitClosed(c)
	})
	sub := subscribe(t, f.url, "s", "g", trine.WithReadLimit(1024))
	if err := ended(t, sub); !errors.Is(err, trine.ErrMessageTooLarge) {
		t.Fatalf("ended with %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("%d requests", n)
	}
}

// A connection silent past the idle timeout is dropped and resumed; pings
// keep a quiet one open.
func TestSubscribeIdleTimeout(t *testing.T) {
	f := newFakeGateway(t, func(n int, w http.ResponseWriter, r *http.Request) {
		c := accept(t, w, r)
		if n == 0 {
			send(c, frame(3, "", `{"type":"sync","data":[]}`))
			waitClosed(c) // silent
			return
		}
		ctx := c.CloseRead(context.Background())
		send(c, frame(4, "a", `{"type":"create","data":1}`))
		for {
			select {
			case <-ctx.Done():
				c.CloseNow()
				return
			case <-time.After(20 * time.Millisecond):
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				c.CloseNow()
				return
			}
		}
	})
	sub := subscribe(t, f.url, "s", "g", trine.WithIdleTimeout(150*time.Millisecond))
	if ev := next(t, sub); ev.Type != "sync" {
		t.Fatalf("sync: %+v", ev)
	}
	if ev := next(t, sub); ev.Seq != 4 {
		t.Fatalf("after the idle drop: %+v", ev)
	}
	time.Sleep(500 * time.Millisecond)
	reqs := f.requests()
	if len(reqs) != 2 || reqs[1].URL.Query().Get("since") != "3" {
		t.Fatalf("%d requests; the second %v", len(reqs), reqs[len(reqs)-1].URL)
	}
}

func TestSubscribeBadInput(t *testing.T) {
	ctx := t.Context()
	const base = "ws://127.0.0.1:1"
	for _, tc := range []struct {
		name, base, stream, group string
		opt                       trine.SubscribeOption
	}{
		{"empty stream", base, "", "g", nil},
		{"empty group", base, "s", "", nil},
		{"bad utf-8", base, "s\xff", "g", nil},
		{"bad item", base, "s", "g", trine.WithItem("\xff")},
		{"no scheme", "127.0.0.1:1", "s", "g", nil},
		{"ftp", "ftp://h/", "s", "g", nil},
		{"no host", "ws:///x", "s", "g", nil},
		{"bad url", "ws://%zz", "s", "g", nil},
		{"backoff", base, "s", "g", trine.WithReconnectBackoff(time.Second, time.Millisecond)},
		{"buffer", base, "s", "g", trine.WithBuffer(-1)},
		{"read limit", base, "s", "g", trine.WithReadLimit(0)},
		{"idle", base, "s", "g", trine.WithIdleTimeout(-1)},
	} {
		sub, err := trine.Subscribe(ctx, tc.base, tc.stream, tc.group, tc.opt)
		if sub != nil || !errors.Is(err, trine.ErrInvalidArgument) {
			t.Errorf("%s: %v, %v", tc.name, sub, err)
		}
	}
	var nilCtx context.Context
	if _, err := trine.Subscribe(nilCtx, base, "s", "g"); !errors.Is(err, trine.ErrInvalidArgument) {
		t.Errorf("nil context: %v", err)
	}
	// Nothing listening: the first connection fails with unavailable.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	if _, err := trine.Subscribe(ctx, "ws://"+addr, "s", "g"); !errors.Is(err, trine.ErrUnavailable) {
		t.Errorf("nothing listening: %v", err)
	}
	// A cancelled context fails with cancelled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := trine.Subscribe(cctx, "ws://"+addr, "s", "g"); !errors.Is(err, trine.ErrCancelled) {
		t.Errorf("cancelled: %v", err)
	}
	// A nil subscription does not panic.
	var nilSub *trine.Subscription
	if _, ok := <-nilSub.Events(); ok || nilSub.Close() != nil || nilSub.Err() != nil || nilSub.LastSeq() != 0 {
		t.Error("nil subscription")
	}
}

// subscriptionGoroutines counts goroutines running Subscription code.
func subscriptionGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "worker-sdk.(*Subscription)") {
			n++
		}
	}
	return n
}

// Close and the end of the context stop every goroutine, whatever the
// subscription is doing: reading, blocked on a full Events channel, or
// waiting to reconnect.
func TestSubscribeCloseStopsEverything(t *testing.T) {
	f := newFakeGateway(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		c := accept(t, w, r)
		if c == nil {
			return
		}
		switch r.URL.Query().Get("token") {
		case "flood":
			for i := range 1000 {
				send(c, frame(uint64(i), "a", `{"type":"update","data":1}`))
			}
		case "drop":
			send(c, frame(1, "", `{"type":"sync","data":[]}`))
			c.Close(websocket.StatusGoingAway, "")
			return
		default:
			send(c, frame(1, "", `{"type":"sync","data":[]}`))
		}
		waitClosed(c)
	})
	ignore := goleak.IgnoreCurrent()
	check := func(t *testing.T, sub *trine.Subscription, stop func()) {
		t.Helper()
		start := time.Now()
		stop()
		if err := sub.Close(); err != nil { // waits, and is idempotent
			t.Fatalf("Close() = %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("stopping took %v", d)
		}
		// Close returns once the goroutine has closed done; give it the
		// moment it needs to leave its deferred calls.
		for deadline := time.Now().Add(time.Second); subscriptionGoroutines() != 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if n := subscriptionGoroutines(); n != 0 {
			t.Fatalf("%d subscription goroutines after Close", n)
		}
		for range sub.Events() { // closed; buffered events stay readable
		}
		if err := sub.Err(); err != nil {
			t.Fatalf("Err() = %v after Close", err)
		}
	}
	open := func(t *testing.T, ctx context.Context, token string, opts ...trine.SubscribeOption) *trine.Subscription {
		t.Helper()
		opts = append(opts, trine.WithQuery(url.Values{"token": {token}}))
		sub, err := trine.Subscribe(ctx, f.url, "s", "g", opts...)
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	t.Run("reading", func(t *testing.T) {
		sub := open(t, t.Context(), "")
		next(t, sub)
		check(t, sub, func() { sub.Close() })
	})
	t.Run("blocked delivering", func(t *testing.T) {
		sub := open(t, t.Context(), "flood", trine.WithBuffer(0))
		next(t, sub)
		time.Sleep(20 * time.Millisecond)
		check(t, sub, func() { sub.Close() })
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		sub := open(t, ctx, "flood", trine.WithBuffer(0))
		next(t, sub)
		check(t, sub, func() {
			cancel()
			if err := ended(t, sub); err != nil {
				t.Fatalf("Err() = %v after the context ended", err)
			}
		})
	})
	t.Run("waiting to reconnect", func(t *testing.T) {
		sub := open(t, t.Context(), "drop", trine.WithReconnectBackoff(time.Hour, time.Hour))
		next(t, sub)
		time.Sleep(50 * time.Millisecond)
		check(t, sub, func() { sub.Close() })
	})
	t.Run("idle timer", func(t *testing.T) {
		sub := open(t, t.Context(), "", trine.WithIdleTimeout(time.Hour))
		next(t, sub)
		check(t, sub, func() { sub.Close() })
	})
	goleak.VerifyNone(t, ignore)
}
