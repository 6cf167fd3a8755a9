package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

func TestGroupSocket(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "todos", "inbox", "b", map[string]any{"t": "B"})
	s.set(t, "todos", "inbox", "a", map[string]any{"t": "A"})
	c := s.dial(t, groupPath("todos", "inbox"), nil)
	f := c.read()
	e := f.event(t)
	must(t, f.kind() == "sync" && f.Seq == 2 && f.ID == nil && f.SubscriptionID == nil &&
		string(e.Data) == `[{"t":"A"},{"t":"B"}]` && strings.Join(e.IDs, ",") == "a,b",
		"sync frame: %s", f.Raw)

	s.set(t, "todos", "inbox", "c", 1)
	s.set(t, "todos", "inbox", "c", 2)
	s.call(t, "stream::delete", map[string]any{"stream_name": "todos", "group_id": "inbox", "item_id": "c"})
	s.call(t, "stream::send", map[string]any{"stream_name": "todos", "group_id": "inbox", "type": "typing", "data": "ann"})
	s.set(t, "todos", "other", "x", 1) // another group: never delivered
	for i, want := range []string{"create", "update", "delete", "event"} {
		f := c.read()
		must(t, f.kind() == want && f.Seq == uint64(3+i) && f.StreamName == "todos" && f.GroupID == "inbox", "frame %d: %s", i, f.Raw)
	}
	c.quiet(100 * time.Millisecond)
}

func TestItemSocket(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "s", "g", "me", "v1")
	c := s.dial(t, groupPath("s", "g", "item_id=me"), nil)
	f := c.read()
	must(t, f.kind() == "sync" && *f.ID == "me" && string(f.event(t).Data) == `"v1"`, "item sync: %s", f.Raw)
	s.set(t, "s", "g", "other", 1)
	s.call(t, "stream::send", map[string]any{"stream_name": "s", "group_id": "g", "type": "x", "data": 1})
	s.call(t, "stream::send", map[string]any{"stream_name": "s", "group_id": "g", "type": "to-me", "data": 1, "id": "me"})
	s.set(t, "s", "g", "me", "v2")
	f = c.read()
	must(t, f.kind() == "event" && f.Seq == 4 && f.event(t).Event.Type == "to-me", "targeted event: %s", f.Raw)
	f = c.read()
	must(t, f.kind() == "update" && f.Seq == 5 && string(f.event(t).Data) == `"v2"`, "item update: %s", f.Raw)
	c.quiet(100 * time.Millisecond)
}

func TestMultiplexedSocket(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "s", "g", "i", 1)
	c := s.dial(t, "/", nil)
	c.send(join("group", "s", "g"))
	f := c.read()
	must(t, f.kind() == "sync" && *f.SubscriptionID == "group" && f.Seq == 1, "group sync: %s", f.Raw)
	c.send(join("item", "s", "g", "id", "i"))
	f = c.read()
	must(t, f.kind() == "sync" && *f.SubscriptionID == "item" && *f.ID == "i", "item sync: %s", f.Raw)

	s.set(t, "s", "g", "i", 2)
	got := map[string]bool{}
	for range 2 {
		f := c.read()
		must(t, f.kind() == "update" && f.Seq == 2, "update: %s", f.Raw)
		got[*f.SubscriptionID] = true
	}
	must(t, got["group"] && got["item"], "each subscription gets its copy: %v", got)

	c.send(leave("item", "s", "g"))
	c.send(map[string]any{"type": "ping"})
	must(t, c.read().Type == "pong", "pong")
	s.set(t, "s", "g", "i", 3)
	f = c.read()
	must(t, *f.SubscriptionID == "group" && f.Seq == 3, "after leave: %s", f.Raw)
	c.quiet(100 * time.Millisecond)
	must(t, s.gw.Stats().Groups == 1, "gateway holds %d groups", s.gw.Stats().Groups)
	subject := natsfanout.Subject("s", "g")
	must(t, serverInterest(t, s, subject) == 1, "the NATS server holds %d subscriptions on %s", serverInterest(t, s, subject), subject)
	c.send(leave("group", "s", "g"))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the last leave drops the group's NATS interest", func() bool { return s.gw.Stats().Groups == 0 }))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the NATS server drops the gateway's subscription", func() bool { return serverInterest(t, s, subject) == 0 }))
}

// serverInterest counts the subscriptions the NATS server holds on subject.
func serverInterest(t *testing.T, s *stack, subject string) int {
	t.Helper()
	cz, err := s.ns.Connz(&server.ConnzOptions{Subscriptions: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cz.Conns {
		for _, sub := range c.Subs {
			if sub == subject {
				n++
			}
		}
	}
	return n
}

func TestBadFrames(t *testing.T) {
	s := newStack(t, gateway.Config{MaxFrameBytes: 1024}, streammodule.Config{})
	c := s.dial(t, "/", nil)
	c.send([]byte("   "))
	for _, bad := range []string{`not json`, `{"type":"subscribe"}`, `{"type":"join","data":{"streamName":"s"}}`,
		`{"type":"join","data":{"subscriptionId":1,"streamName":"s","groupId":"g"}}`, `[1,2]`,
		`{"type":"join","data":{"subscriptionId":"x","streamName":"s","groupId":"g","since":"soon"}}`,
		`{"type":"join","data":{"subscriptionId":"x","streamName":"","groupId":"g"}}`} {
		c.send([]byte(bad))
		f := c.read()
		must(t, f.Type == "error" && f.Code == "bad_frame" && f.Message != "", "%s: %s", bad, f.Raw)
	}
	// Binary frames holding JSON work too, and the socket still serves joins.
	b, _ := json.Marshal(join("ok", "s", "g"))
	if err := c.c.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		t.Fatal(err)
	}
	must(t, c.read().kind() == "sync", "join after bad frames")
	// A message over the limit closes the socket with 1009.
	c.send([]byte(`{"type":"ping","pad":"` + strings.Repeat("x", 2000) + `"}`))
	code := c.closed()
	must(t, code == websocket.StatusMessageTooBig, "oversize frame: %v (%v)", code, c.err)
}

// A continuation frame whose length overflows the message's running size
// (2^63-2 bytes after a 3-byte first fragment) closes the socket with 1009;
// it used to pass the size check and crash the process in makeslice.
func TestOverflowingFragmentLength(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	nc := rawUpgrade(t, s, "/")
	var b bytes.Buffer
	_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewFrame(ws.OpText, false, []byte("abc"))))
	_ = ws.WriteHeader(&b, ws.Header{OpCode: ws.OpContinuation, Fin: true, Masked: true, Length: 1<<63 - 2})
	if _, err := nc.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	code, _ := readUntilClose(t, nc)
	must(t, code == 1009, "close %d, want 1009", code)
	must(t, s.gw.Stats().Conns <= 1, "the gateway still serves")
}

func TestUnknownStreamStartsEmpty(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	c := s.dial(t, groupPath("never", "written"), nil)
	f := c.read()
	must(t, f.kind() == "sync" && f.Seq == 0 && string(f.event(t).Data) == "[]", "empty sync: %s", f.Raw)
	c2 := s.dial(t, groupPath("never", "written", "item_id=x"), nil)
	f = c2.read()
	must(t, f.kind() == "sync" && string(f.event(t).Data) == "null", "empty item sync: %s", f.Raw)
}

func TestSSE(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "s", "g", "a", 1)
	c := s.sse(t, groupPath("s", "g"), nil)
	id, f := c.next()
	must(t, id == "1" && f.kind() == "sync" && f.Seq == 1, "SSE sync: %s %s", id, f.Raw)
	s.set(t, "s", "g", "a", "multi\nline")
	s.set(t, "s", "g", "b", 3)
	id, f = c.next()
	must(t, id == "2" && f.kind() == "update" && string(f.event(t).Data) == `"multi\nline"`, "SSE update: %s %s", id, f.Raw)
	id, _ = c.next()
	must(t, id == "3", "SSE id %s", id)
	c.resp.Body.Close()

	// Last-Event-ID resumes after the last event received.
	s.set(t, "s", "g", "c", 4)
	s.set(t, "s", "g", "d", 5)
	c = s.sse(t, groupPath("s", "g"), map[string][]string{"Last-Event-ID": {"3"}})
	for _, want := range []string{"4", "5"} {
		id, f := c.next()
		must(t, id == want && f.kind() == "create", "resumed %s: %s %s", want, id, f.Raw)
	}
}

// Hostile names work in paths and join frames, and events never cross
// into another stream or group.
func TestHostileNames(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	names := []string{".", "*", ">", ":", "/", "a b", "🔥", "a.b", "a/b", "%2F", "trine.stream"}
	byPath := make([]*client, len(names))
	for i, n := range names {
		byPath[i] = s.dial(t, groupPath(n, n), nil)
		must(t, byPath[i].read().kind() == "sync", "sync for %q", n)
	}
	mux := s.dial(t, "/", nil)
	for i, n := range names {
		mux.send(join(strconv.Itoa(i), "x"+n, n))
		must(t, mux.read().kind() == "sync", "join %q", n)
	}
	for i, n := range names {
		s.set(t, n, n, n, i)
		s.set(t, "x"+n, n, n, i)
	}
	for i, n := range names {
		f := byPath[i].read()
		must(t, f.StreamName == n && f.GroupID == n && *f.ID == n && string(f.event(t).Data) == strconv.Itoa(i), "path client %q got %s", n, f.Raw)
		byPath[i].quiet(0)
	}
	for range names {
		f := mux.read()
		i, _ := strconv.Atoi(*f.SubscriptionID)
		must(t, f.StreamName == "x"+names[i] && f.GroupID == names[i] && string(f.event(t).Data) == strconv.Itoa(i), "mux got %s", f.Raw)
	}
	time.Sleep(50 * time.Millisecond)
	for i := range names {
		byPath[i].quiet(0)
	}
	mux.quiet(0)
}

// A peer that never answers pings is closed after two intervals; one that
// does stays.
func TestPingClosesDeadPeers(t *testing.T) {
	s := newStack(t, gateway.Config{PingInterval: 50 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}, streammodule.Config{})
	alive := s.dial(t, groupPath("s", "g"), nil) // coder/websocket answers pings while reading
	dead := rawUpgrade(t, s, groupPath("s", "g"))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the silent peer connects", func() bool { return s.gw.Stats().Conns == 2 }))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the silent peer is closed", func() bool { return s.gw.Stats().Conns == 1 }))
	must(t, alive.read().kind() == "sync", "live client")
	s.set(t, "s", "g", "i", 1)
	must(t, alive.read().kind() == "create", "live client still served")
	_ = dead
}

func TestRoutes(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	for path, want := range map[string]int{"/stream/a": 404, "/stream/a/b/c": 404, "/nope": 404,
		"/stream/a/b?since=x": 400, "/stream?stream=&group=g": 400, "/stream/a/b": 400 /* neither upgrade nor SSE */} {
		resp, err := http.Get(s.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		must(t, resp.StatusCode == want, "GET %s = %d, want %d", path, resp.StatusCode, want)
	}
	resp, err := http.Post(s.srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	must(t, resp.StatusCode == 405, "POST / = %d", resp.StatusCode)
}

// Names at the 1024-byte limit, and a hostile request over it, through
// every path: none may take down the NATS connection that every
// subscription shares (a 2100-dot name used to make a subject over the
// server's 4096-byte control line, and NATS closed the connection).
func TestLongNamesEveryPath(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	dots, dots2 := strings.Repeat(".", 1024), strings.Repeat(".", 1023)+"x"
	normal := s.dial(t, groupPath("s", "g"), nil)
	must(t, normal.read().kind() == "sync", "normal sync")
	// Over the limit: refused (or served), never fatal to others.
	huge := strings.Repeat(".", 2100)
	resp := get(t, s.srv.URL+groupPath(huge, huge))
	must(t, resp.StatusCode == http.StatusBadRequest, "2100-byte names: %s", resp.Status)
	// At the limit: paths (?stream= for dots), SSE and the multiplexed socket.
	byPath := s.dial(t, groupPath(dots, dots), nil)
	must(t, byPath.read().kind() == "sync", "path sync")
	ev := s.sse(t, groupPath(dots, dots2), nil)
	if _, f := ev.next(); f.kind() != "sync" {
		t.Fatalf("SSE first frame %s", f.Raw)
	}
	mux := s.dial(t, "/", nil)
	mux.send(join("long", dots2, dots))
	must(t, mux.read().kind() == "sync", "mux join")
	s.set(t, dots, dots, dots, 1)
	s.set(t, dots, dots2, dots2, 2)
	s.set(t, dots2, dots, dots, 3)
	s.set(t, "s", "g", "i", 4)
	f := byPath.read()
	must(t, f.StreamName == dots && f.GroupID == dots && string(f.event(t).Data) == "1", "path client got %.80s", f.Raw)
	if _, f := ev.next(); f.GroupID != dots2 || string(f.event(t).Data) != "2" {
		t.Fatalf("SSE client got %.80s", f.Raw)
	}
	f = mux.read()
	must(t, *f.SubscriptionID == "long" && f.StreamName == dots2 && string(f.event(t).Data) == "3", "mux got %.80s", f.Raw)
	f = normal.read()
	must(t, f.kind() == "create" && string(f.event(t).Data) == "4", "the normal client after long names: %.80s", f.Raw)
	// And a subscription made after all that still works.
	late := s.dial(t, groupPath("s", "late"), nil)
	must(t, late.read().kind() == "sync", "late sync")
	s.set(t, "s", "late", "i", 5)
	must(t, late.read().kind() == "create", "late client served")
}

// A text message that is not valid UTF-8 closes the socket with 1007, as
// RFC 6455 asks; a write with invalid UTF-8 never reaches a browser.
func TestInvalidUTF8(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	c := s.dial(t, "/", nil)
	if err := c.c.Write(context.Background(), websocket.MessageText, []byte("{\"type\":\"ping\",\"x\":\"\xff\"}")); err != nil {
		t.Fatal(err)
	}
	<-c.done
	must(t, websocket.CloseStatus(c.err) == 1007, "close after invalid UTF-8: %v", c.err)

	sub := s.dial(t, groupPath("s", "g"), nil)
	must(t, sub.read().kind() == "sync", "sync")
	for _, p := range []string{"{\"stream_name\":\"s\",\"group_id\":\"g\",\"item_id\":\"i\",\"data\":\"\xff\"}",
		`{"stream_name":"s","group_id":"g","item_id":"\ud800","data":1}`} {
		_, err := s.e.Trigger(context.Background(), engine.Call{FunctionID: "stream::set", Payload: []byte(p)})
		must(t, engine.AsError(err).Code == codes.InvalidArgument, "set %q: %v", p, err)
	}
	s.set(t, "s", "g", "ok", "\ufffd")
	f := sub.read()
	must(t, f.kind() == "create" && *f.ID == "ok", "only the valid write is delivered: %s", f.Raw)
}

// A stream's sync frame carries its contract's version, and its
// subscribers get a schema frame when a new version is defined; other
// streams' subscribers do not.
func TestContractVersionAndSchemaFrame(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.call(t, "stream::define", map[string]any{"stream_name": "todos", "version": 3, "item_schema": map[string]any{"type": "object"}})
	s.set(t, "todos", "inbox", "a", map[string]any{"t": "A"})
	c := s.dial(t, "/", nil)
	c.send(join("1", "todos", "inbox"))
	c.send(join("2", "other", "g"))
	c.send(join("3", "todos", "inbox", "id", "a"))
	versions := map[string]uint64{}
	for range 3 {
		f := c.read()
		must(t, f.kind() == "sync", "sync: %s", f.Raw)
		versions[*f.SubscriptionID] = contractVersion(t, f)
	}
	must(t, versions["1"] == 3 && versions["2"] == 0 && versions["3"] == 3, "contract versions in sync frames: %v", versions)
	s.call(t, "stream::define", map[string]any{"stream_name": "todos", "version": 4, "item_schema": map[string]any{"type": "object"}})
	got := map[string]bool{}
	for range 2 {
		f := c.read()
		must(t, f.kind() == "schema" && contractVersion(t, f) == 4 && f.StreamName == "todos", "schema frame: %s", f.Raw)
		got[*f.SubscriptionID] = true
	}
	must(t, got["1"] && got["3"], "schema frames for %v", got)
	c.quiet(100 * time.Millisecond)
}

// A contract notice can reach a gateway after a subscriber's sync already
// told its version, or twice, or out of date: a schema frame tells a
// subscriber only a version newer than the one it has.
func TestSchemaFrameTellsOnlyANewerVersion(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.call(t, "stream::define", map[string]any{"stream_name": "todos", "version": 3, "item_schema": map[string]any{"type": "object"}})
	c := s.dial(t, "/", nil)
	c.send(join("1", "todos", "inbox"))
	f := c.read()
	must(t, f.kind() == "sync" && contractVersion(t, f) == 3, "sync: %s", f.Raw)
	c.quiet(200 * time.Millisecond) // the notice of version 3, if late, is dropped

	notices := natsfanout.NewPublisher(natstest.Connect(t, s.ns))
	for _, v := range []uint64{3, 2, 5, 5, 4} {
		if err := notices.PublishContract("todos", v); err != nil {
			t.Fatal(err)
		}
	}
	f = c.read()
	must(t, f.kind() == "schema" && contractVersion(t, f) == 5, "schema frame: %s", f.Raw)
	c.quiet(200 * time.Millisecond)
}

// contractVersion is a stream frame's event.contractVersion.
func contractVersion(t *testing.T, f frame) uint64 {
	var e struct {
		ContractVersion uint64 `json:"contractVersion"`
	}
	must(t, json.Unmarshal(f.Event, &e) == nil, "event of %s", f.Raw)
	return e.ContractVersion
}
