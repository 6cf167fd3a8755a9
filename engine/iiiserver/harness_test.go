package iiiserver_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/internal/enginetest"
)

// stack is an engine serving the iii protocol on a real loopback listener.
type stack struct {
	e   *engine.Engine
	srv *iiiserver.Server
	url string // ws://…
}

func start(t testing.TB, cfg iiiserver.Config) *stack {
	t.Helper()
	e := enginetest.Run(t, engine.Config{DefaultTimeout: 5 * time.Second, ProviderTimeout: 2 * time.Second})
	if cfg.NamespaceGrace == 0 {
		cfg.NamespaceGrace = 50 * time.Millisecond
	}
	srv := iiiserver.New(e, cfg)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return &stack{e: e, srv: srv, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// client is a raw iii worker connection.
type client struct {
	t        *testing.T
	ws       *websocket.Conn
	workerID string
	token    string
}

// dial connects and reads workerregistered.
func (s *stack) dial(t *testing.T) *client {
	t.Helper()
	c := s.dialRaw(t, "/")
	m := c.next()
	if m["type"] != "workerregistered" || m["worker_id"] == "" || m["reattach_token"] == "" {
		t.Fatalf("first frame %v, want workerregistered with worker_id and reattach_token", m)
	}
	c.workerID, c.token = m["worker_id"].(string), m["reattach_token"].(string)
	return c
}

func (s *stack) dialRaw(t *testing.T, path string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &client{t: t, ws: ws}
}

// hello describes the worker, as the SDKs do last after connecting.
func (c *client) hello(name string) {
	c.send(map[string]any{"type": "invokefunction", "function_id": "engine::workers::register",
		"data":   map[string]any{"runtime": "node", "version": "0.22.1", "name": name, "os": "linux", "pid": 7},
		"action": map[string]any{"type": "void"}})
}

func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(websocket.MessageText, b)
}

func (c *client) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, typ, b); err != nil {
		c.t.Fatal(err)
	}
}

// next reads one message; it fails the test after 5s.
func (c *client) next() map[string]any {
	c.t.Helper()
	m, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *client) read(d time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("engine sent %q: %v", b, err)
	}
	return m, nil
}

// expect reads until a message of type typ, failing on any other type.
func (c *client) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["type"] != typ {
		c.t.Fatalf("got %v, want a %s message", m, typ)
	}
	return m
}

// quiet checks that nothing but the pong of a ping arrives: the engine
// answers in order, so anything sent before shows up first.
func (c *client) quiet() {
	c.t.Helper()
	c.send(map[string]any{"type": "ping"})
	if m := c.next(); m["type"] != "pong" {
		c.t.Fatalf("got %v before the pong", m)
	}
}

func (s *stack) waitFunction(t *testing.T, id string, present bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.e.HasFunction(id) != present {
		if time.Now().After(deadline) {
			t.Fatalf("function %q present=%v, want %v", id, !present, present)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func code(err error) engine.Code {
	if err == nil {
		return ""
	}
	return engine.AsError(err).Code
}
