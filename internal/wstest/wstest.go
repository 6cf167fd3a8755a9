// Package wstest opens raw client WebSockets for tests and load tools:
// peers that send exact bytes, and may never read.
//
// Concurrency: a test helper; its functions run on their caller's goroutine
// and start none.
package wstest

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// Dial connects to addr (host:port) and upgrades path, returning the raw
// connection. rcvbuf > 0 sets the socket's receive buffer first: a small
// one makes a peer that does not read fill up at once.
func Dial(ctx context.Context, addr, path string, rcvbuf int) (net.Conn, error) {
	var d net.Dialer
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	u := &url.URL{Scheme: "ws", Host: addr, Path: path}
	if _, _, err := (ws.Dialer{}).Upgrade(nc, u); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// Masked encodes msgs as masked client frames of type op.
func Masked(op ws.OpCode, fin bool, msgs ...string) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewFrame(op, fin, []byte(m))))
	}
	return b.Bytes()
}

// SendAndDrain writes data to nc, closes its write side and reads what
// the server sends until it closes, or d passes.
func SendAndDrain(nc net.Conn, data []byte, d time.Duration) {
	_ = nc.SetDeadline(time.Now().Add(d))
	_, _ = nc.Write(data)
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, nc)
}
