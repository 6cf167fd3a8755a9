package iiiserver_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/engine/iiiserver"
)

// heldConn is a client socket whose Close waits for release: a worker
// that has sent its close frame, and read the engine's, but whose runtime
// has not closed the TCP connection yet (a busy event loop).
type heldConn struct {
	net.Conn
	closing chan struct{} // closed when the client closes the socket
	release chan struct{}
	once    sync.Once
	closed  sync.Once
}

func (h *heldConn) Close() error {
	h.closed.Do(func() { close(h.closing) })
	<-h.release
	return h.Conn.Close()
}

func (h *heldConn) free() { h.once.Do(func() { close(h.release) }) }

// heldClient is a client whose socket stays open after its close
// handshake until the test ends.
type heldClient struct {
	*client
	conn *heldConn
}

func (s *stack) dialHeld(t *testing.T) *heldClient {
	t.Helper()
	var held []*heldConn
	var mu sync.Mutex
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		h := &heldConn{Conn: nc, closing: make(chan struct{}), release: make(chan struct{})}
		mu.Lock()
		held = append(held, h)
		mu.Unlock()
		return h, nil
	}}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range held {
			h.free()
		}
		tr.CloseIdleConnections()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	c := &client{t: t, ws: ws}
	m := c.next()
	if m["type"] != "workerregistered" {
		t.Fatalf("first frame %v, want workerregistered", m)
	}
	c.workerID = m["worker_id"].(string)
	mu.Lock()
	defer mu.Unlock()
	if len(held) != 1 {
		t.Fatalf("%d connections dialled, want 1", len(held))
	}
	return &heldClient{client: c, conn: held[0]}
}

// leave closes the worker's WebSocket as iii's SDKs do on shutdown: a
// close frame, and the engine's answer read; the TCP connection stays.
func (c *heldClient) leave() {
	c.t.Helper()
	go func() { _ = c.ws.Close(websocket.StatusNormalClosure, "") }()
	select {
	case <-c.conn.closing:
	case <-time.After(5 * time.Second):
		c.t.Fatal("the close handshake did not end")
	}
}

// TestDepartureReachesProvidersInOrder replays the order of events of
// iii's trigger-type lifecycle suite: a worker that has closed its
// WebSocket is gone for the engine from its close frame on, not from the
// end of its TCP connection, so that what any worker does next (a new
// provider of the same type, another trigger) finds its registrations
// gone and its provider already told.
func TestDepartureReachesProvidersInOrder(t *testing.T) {
	t.Parallel()
	s := start(t, iiiserver.Config{})
	provider := func(name string) *heldClient {
		p := s.dialHeld(t)
		p.send(map[string]any{"type": "registertriggertype", "id": "lifecycle", "description": "d"})
		p.hello(name)
		s.waitProvider(t, "lifecycle", p.workerID)
		return p
	}
	consumer := func(name, trigger string) *heldClient {
		c := s.dialHeld(t)
		c.send(map[string]any{"type": "registerfunction", "id": name + "::fn"})
		c.send(map[string]any{"type": "registertrigger", "id": trigger, "trigger_type": "lifecycle", "function_id": name + "::fn", "config": map[string]any{"tag": "x"}})
		c.hello(name)
		return c
	}
	bind := func(p *heldClient, trigger string) {
		t.Helper()
		m := p.expect("registertrigger")
		if m["id"] != trigger {
			t.Fatalf("provider offered %v, want trigger %s", m, trigger)
		}
		p.send(map[string]any{"type": "triggerregistrationresult", "id": m["id"], "trigger_type": "lifecycle", "function_id": m["function_id"]})
	}

	// A provider reconnects: the new one is offered the bound trigger, and
	// only it, at once.
	p1 := provider("p1")
	c1 := consumer("c1", "t1")
	bind(p1, "t1")
	p1.leave()
	p2 := provider("p2")
	bind(p2, "t1")
	p2.quiet()

	// A consumer leaves, and another registers: the provider hears of the
	// departure first.
	c1.leave()
	c2 := consumer("c2", "t2")
	if m := p2.next(); m["type"] != "unregistertrigger" || m["id"] != "t1" {
		t.Fatalf("provider got %v first, want unregistertrigger of t1", m)
	}
	bind(p2, "t2")

	// The provider and the consumer leave (iii's afterEach), and a new
	// provider comes: it is offered nothing of theirs.
	p2.leave()
	c2.leave()
	p3 := provider("p3")
	if _, ts := s.e.Triggers(); len(ts) != 0 {
		t.Fatalf("triggers of workers that left: %+v", ts)
	}
	p3.quiet()

	// A consumer leaves while the provider has not answered for its
	// trigger yet: the provider, which may still take it, is told it is
	// gone.
	consumer("c3", "t3")
	if m := p3.expect("registertrigger"); m["id"] != "t3" {
		t.Fatalf("provider offered %v, want t3", m)
	}
	c4 := consumer("c4", "t4")
	if m := p3.expect("registertrigger"); m["id"] != "t4" {
		t.Fatalf("provider offered %v, want t4", m)
	}
	c4.leave()
	if m := p3.expect("unregistertrigger"); m["id"] != "t4" {
		t.Fatalf("provider got %v, want unregistertrigger of t4", m)
	}
}

// waitProvider waits until worker provides trigger type id.
func (s *stack) waitProvider(t *testing.T, id, worker string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		types, _ := s.e.Triggers()
		for _, tt := range types {
			if tt.ID == id && tt.ProviderID == worker {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s never became the provider of %q: %+v", worker, id, types)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
