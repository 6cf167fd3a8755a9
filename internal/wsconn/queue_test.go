package wsconn_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/internal/wsconn"
)

// A queue refuses what would pass its bytes at once, waits for room in
// messages only until the caller's context ends, and Run writes what is
// queued, in order, to a peer that reads.
func TestQueue(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := wsconn.NewConn(server, server, 512, 1<<20, time.Second)
	q := wsconn.NewQueue(ctx, c, 2, 64)
	msg := wsconn.Frame(wsconn.OpText, make([]byte, 20)) // 22 bytes
	if !q.TryPut(msg) || q.Put(ctx, msg) != nil {
		t.Fatal("room for two messages of 22 bytes")
	}
	if err := q.Put(ctx, wsconn.Frame(wsconn.OpText, make([]byte, 30))); !errors.Is(err, wsconn.ErrQueueFull) {
		t.Fatalf("past the bytes: %v", err)
	}
	if q.TryPut(msg) {
		t.Fatal("TryPut past the messages")
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if err := q.Put(short, wsconn.Frame(wsconn.OpText, nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for room: %v", err)
	}
	if q.Bytes() != 44 {
		t.Fatalf("Bytes = %d, want 44 (a refused message leaves nothing)", q.Bytes())
	}
	done := make(chan error, 1)
	go func() { done <- q.Run() }()
	br := bufio.NewReader(client)
	for range 2 {
		//lint:ignore SA1019 the test reads small frames from its own server
		f, err := ws.ReadFrame(br)
		if err != nil || len(f.Payload) != 20 {
			t.Fatalf("frame: %v %d", err, len(f.Payload))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after the connection ended: %v", err)
	}
}
