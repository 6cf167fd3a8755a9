package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
)

// stack is an engine serving iii's worker protocol with iiiserver on a
// loopback listener, and the callee worker serving bench::echo.
type stack struct {
	e   *engine.Engine
	srv *iiiserver.Server
	hs  *http.Server
	url string

	stopEngine context.CancelFunc
	ran        chan struct{} // engine Run returned
	served     chan struct{} // hs.Serve returned, nil before it started
	callee     *websocket.Conn
	echoed     chan struct{} // the callee's echo returned, nil before it started
}

// startStack starts the engine and its iii server, and attaches the callee
// worker; it returns once the engine routes bench::echo to it.
func startStack(ctx context.Context) (*stack, error) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &stack{e: e, stopEngine: cancel, ran: make(chan struct{})}
	go func() {
		defer close(s.ran)
		if err := e.Run(runCtx); err != nil {
			log.Printf("engine: %v", err)
		}
	}()
	s.srv = iiiserver.New(e, iiiserver.Config{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, err
	}
	s.url = "ws://" + lis.Addr().String() + "/"
	s.hs = &http.Server{Handler: s.srv, ReadHeaderTimeout: 10 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Printf("iii server: %v", err)
		}
	}()

	if s.callee, err = s.dialWorker(ctx, "bench-callee", fnEcho); err != nil {
		s.close()
		return nil, fmt.Errorf("callee: %w", err)
	}
	s.echoed = make(chan struct{})
	go func() {
		defer close(s.echoed)
		if err := echo(s.callee); !normalEnd(err) {
			log.Printf("callee: %v", err)
		}
	}()
	if err := s.waitFunction(ctx, fnEcho); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// dialWorker connects an iii worker: it reads workerregistered, registers
// functions, then describes itself with the engine::workers::register void
// call, as the iii SDKs do.
func (s *stack) dialWorker(ctx context.Context, name string, functions ...string) (*websocket.Conn, error) {
	ws, err := dial(ctx, s.url)
	if err != nil {
		return nil, err
	}
	if err := join(ctx, ws, name, functions); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	return ws, nil
}

func join(ctx context.Context, ws *websocket.Conn, name string, functions []string) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("read workerregistered: %w", err)
	}
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil || m.Type != typeWorkerRegistered || m.WorkerID == "" {
		return fmt.Errorf("first message %q, want workerregistered", b)
	}
	for _, id := range functions {
		if err := writeJSON(ctx, ws, registerFunction{Type: typeRegisterFunction, ID: id, Description: "echo"}); err != nil {
			return fmt.Errorf("register %s: %w", id, err)
		}
	}
	info, err := json.Marshal(map[string]any{"name": name, "runtime": "go", "version": "bench"})
	if err != nil {
		return err
	}
	hello := invokeFunction{Type: typeInvokeFunction, FunctionID: engine.FnWorkersRegister, Data: info, Action: &action{Type: "void"}}
	if err := writeJSON(ctx, ws, hello); err != nil {
		return fmt.Errorf("call %s: %w", engine.FnWorkersRegister, err)
	}
	return nil
}

// waitFunction polls until the engine routes id.
func (s *stack) waitFunction(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !s.e.HasFunction(id) {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", id, ctx.Err())
		}
	}
	return nil
}

// close disconnects the callee, stops the iii server and the engine, and
// waits for all of their goroutines.
func (s *stack) close() {
	if s.callee != nil {
		_ = s.callee.Close(websocket.StatusNormalClosure, "")
		<-s.echoed
	}
	s.srv.Close()
	if s.hs != nil {
		_ = s.hs.Close()
		<-s.served
	}
	s.stopEngine()
	<-s.ran
}
