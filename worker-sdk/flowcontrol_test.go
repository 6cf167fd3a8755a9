package trine_test

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	trine "github.com/trinehq/trine/worker-sdk"
)

// pingCounter wraps the connections a worker dials and counts the HTTP/2
// PING frames (requests and acks) the worker writes.
type pingCounter struct{ pings atomic.Int64 }

func (p *pingCounter) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &framesConn{Conn: c, p: p, skip: len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}, nil
}

// framesConn parses the HTTP/2 frames written on it (after the client
// preface): a 9-byte header — length (3 bytes), type, flags, stream —
// then the payload.
type framesConn struct {
	net.Conn
	p    *pingCounter
	mu   sync.Mutex
	skip int    // bytes still to skip: the preface, or a frame's payload
	head []byte // a frame header read in part
}

func (c *framesConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	for rest := b; len(rest) > 0; {
		if c.skip > 0 {
			n := min(c.skip, len(rest))
			c.skip -= n
			rest = rest[n:]
			continue
		}
		n := min(9-len(c.head), len(rest))
		c.head = append(c.head, rest[:n]...)
		rest = rest[n:]
		if len(c.head) == 9 {
			if c.head[3] == 0x6 { // PING
				c.p.pings.Add(1)
			}
			c.skip = int(c.head[0])<<16 | int(c.head[1])<<8 | int(c.head[2])
			c.head = c.head[:0]
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// Small calls and results exchange no flow-control pings: gRPC's dynamic
// window (a BDP ping and its ack with nearly every message read, on both
// sides of both connections) is off in the SDK and the engine.
func TestCallsSendNoFlowControlPings(t *testing.T) {
	t.Parallel()
	srv := startEngine(t)
	var p pingCounter
	callee := connect(t, srv.Addr, trine.WithDialer(p.dial))
	caller := connect(t, srv.Addr, trine.WithDialer(p.dial))
	if err := callee.RegisterFunction(t.Context(), "echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
		t.Fatal(err)
	}
	before := p.pings.Load()
	const calls = 200
	for range calls {
		if _, err := caller.Trigger(t.Context(), "echo", json.RawMessage(`"hello"`)); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.pings.Load() - before; n > calls/20 {
		t.Fatalf("%d calls: the workers wrote %d PING frames", calls, n)
	}
}
