package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// wsPublisher writes each message to a baseline's /publish WebSocket.
type wsPublisher struct {
	c      *websocket.Conn
	mu     sync.Mutex
	buf    []byte
	suffix string
}

func newWSPublisher(d *loadgen.Dialer, addr string, pad int) (*wsPublisher, error) {
	ctx, cancel := context.WithTimeout(context.Background(), loadgen.DialTimeout)
	defer cancel()
	c, err := d.Dial(ctx, 0, "ws://"+addr+"/publish")
	if err != nil {
		return nil, fmt.Errorf("connect publisher: %w", err)
	}
	c.CloseRead(context.Background())
	return &wsPublisher{c: c, suffix: `,"pad":"` + strings.Repeat("x", pad) + `"}`}, nil
}

// Publish writes {"ts": <unix nanos now>, "pad": …}.
func (p *wsPublisher) Publish() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := append(p.buf[:0], `{"ts":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, p.suffix...)
	p.buf = b
	if err := p.c.Write(context.Background(), websocket.MessageText, b); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// Goroutines is 1: a WebSocket write does not wait for the fan-out.
func (p *wsPublisher) Goroutines(int) int { return 1 }

// Close closes the socket.
func (p *wsPublisher) Close() { _ = p.c.CloseNow() }
