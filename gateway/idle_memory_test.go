//go:build !race

package gateway_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
)

// idleSocketBudget bounds the live heap a gateway holds per idle,
// subscribed WebSocket (with the test's raw client sockets, a few hundred
// bytes each). Measured 2,370-2,380 B: 2,740 B while each connection
// had a map of its subscriptions and a channel of catch-up turns. Its goroutine's stack, about 2 KiB, comes on top; the
// process's RSS per socket is about twice the heap (the collector's
// headroom) plus the stack: `go run ./bench/fanout -idle` measures it.
const idleSocketBudget = 2600

// TestIdleSocketMemory opens subscribed sockets that then stay idle and
// checks what each costs the process (memory figures mean nothing under
// the race detector, hence the build tag).
func TestIdleSocketMemory(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	s.set(t, "idle", "g", "a", 1)
	addr := strings.TrimPrefix(s.srv.URL, "http://")
	const n = 500
	socks := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range socks {
			_ = c.Close()
		}
	})
	req := []byte("GET " + groupPath("idle", "g") + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	open := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		// The response, then the sync frame (unmasked, length < 126).
		br := bufio.NewReaderSize(c, 16)
		var head []byte
		for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			b, err := br.ReadByte()
			if err != nil {
				t.Fatalf("handshake: %v (%q)", err, head)
			}
			head = append(head, b)
		}
		if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
			t.Fatalf("handshake: %q", head)
		}
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatal(err)
		}
		frame := make([]byte, h[1]&0x7f)
		if _, err := io.ReadFull(br, frame); err != nil || !bytes.Contains(frame, []byte(`"sync"`)) {
			t.Fatalf("want the sync frame, got %q (%v)", frame, err)
		}
		_ = c.SetDeadline(time.Time{})
		return c
	}
	// Warm up pools and maps, then measure.
	for range 50 {
		socks = append(socks, open())
	}
	heap0, stack0 := memFigures()
	for range n {
		socks = append(socks, open())
	}
	heap1, stack1 := memFigures()
	per := (heap1 - heap0) / n
	t.Logf("per idle socket: heap %d B, stack %d B", per, (stack1-stack0)/n)
	must(t, per <= idleSocketBudget, "an idle socket holds %d B of heap; the budget is %d B", per, idleSocketBudget)
	runtime.KeepAlive(socks)
}

// memFigures returns the live heap and the goroutine stacks in use.
func memFigures() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}
