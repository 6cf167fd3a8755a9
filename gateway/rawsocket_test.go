package gateway_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
)

// meteredConn is a wrapper with a Write of its own, as a bandwidth meter
// or limiter has; it embeds *net.TCPConn, so the socket's SyscallConn is
// promoted to it.
type meteredConn struct {
	*net.TCPConn
	n *atomic.Int64
}

func (c meteredConn) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return c.TCPConn.Write(b)
}

type meteredListener struct {
	net.Listener
	n atomic.Int64
}

func (l *meteredListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return meteredConn{c.(*net.TCPConn), &l.n}, nil
}

// The writer pool writes a socket directly only when nothing but the
// socket (or a gateway.PlainConn) stands between: frames to a connection
// under a wrapper with its own Write go through that Write.
func TestWrapperWriteIsKept(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ml := &meteredListener{Listener: l}
	srv := &http.Server{Handler: s.gw}
	go srv.Serve(ml)
	t.Cleanup(func() { srv.Close() })
	o := *s
	o.srv = &httptest.Server{URL: "http://" + l.Addr().String()}
	c := o.dial(t, "/", nil)
	before := ml.n.Load() // the upgrade's response
	c.send(join("s", "w", "g"))
	must(t, c.read().kind() == "sync", "sync")
	s.set(t, "w", "g", "a", map[string]any{"x": 1})
	must(t, c.read().kind() == "create", "create")
	// The frames were written (the client read them) before the count is
	// read, by the same writer that wrote them through Write.
	must(t, ml.n.Load() > before+40, "%d bytes through the wrapper's Write before the join, %d after two frames: the frames went around it", before, ml.n.Load())
}
