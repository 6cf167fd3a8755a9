package main

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// baseline is the one-hop reference: a bare WebSocket server on loopback
// whose every connection runs echo.
type baseline struct {
	url    string
	hs     *http.Server
	served chan struct{} // hs.Serve returned

	ctx    context.Context // ends with close: stops the connections left
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	conns  sync.WaitGroup
}

func startBaseline() (*baseline, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &baseline{url: "ws://" + lis.Addr().String(), served: make(chan struct{}), ctx: ctx, cancel: cancel}
	b.hs = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(b.served)
		if err := b.hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Printf("baseline server: %v", err)
		}
	}()
	return b, nil
}

func (b *baseline) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		http.Error(w, "closing", http.StatusServiceUnavailable)
		return
	}
	b.conns.Add(1)
	b.mu.Unlock()
	defer b.conns.Done()

	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		log.Printf("baseline upgrade: %v", err)
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	stop := context.AfterFunc(b.ctx, func() { _ = ws.CloseNow() })
	defer stop()
	if err := echo(ws); !normalEnd(err) && b.ctx.Err() == nil {
		log.Printf("baseline echo: %v", err)
	}
}

// close stops the server and waits for its connections to end.
func (b *baseline) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	_ = b.hs.Close()
	<-b.served
	b.cancel()
	b.conns.Wait()
}
