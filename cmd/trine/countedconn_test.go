package main

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/trinehq/trine/gateway"
)

// The count must not hide the socket: the gateway writes a TCP socket
// with non-blocking system calls (through gateway.PlainConn), and
// net/http and the gateway half-close it (CloseWrite) after their last
// bytes.
// Behind a wrapper without them, every delivery took two deadline changes
// and a write through the poller, and a close lost its FIN-after-data.
func TestCountedConnKeepsTheSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := countConns("stream", ln)
	defer l.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// The gateway's writer pool writes the socket under the count.
	if p, ok := nc.(gateway.PlainConn); !ok {
		t.Fatalf("%T is not a gateway.PlainConn", nc)
	} else if _, ok := p.PlainConn().(*net.TCPConn); !ok {
		t.Fatalf("PlainConn is %T, want the *net.TCPConn", p.PlainConn())
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is not a syscall.Conn", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	if err := raw.Write(func(fd uintptr) bool {
		_, werr = syscall.Write(int(fd), []byte("raw"))
		return werr != syscall.EAGAIN
	}); err != nil || werr != nil {
		t.Fatalf("raw write: %v, %v", err, werr)
	}
	cw, ok := nc.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T cannot half-close", nc)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "raw" {
		t.Fatalf("client read %q, %v; want \"raw\" then EOF", got, err)
	}
	// Half-closed only: the client's bytes still arrive.
	if _, err := client.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "back" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if got := l.active.Load(); got != 1 {
		t.Fatalf("active %d, want 1", got)
	}
	nc.Close()
	if got := l.active.Load(); got != 0 {
		t.Fatalf("active after close %d, want 0", got)
	}
}
