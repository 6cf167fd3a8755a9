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

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/httptrigger"
)

// stack is an engine with the http trigger type (an httptrigger.Provider
// served by net/http on a loopback listener), bench::hello registered as a
// built-in function, and a worker session owning the trigger that routes
// GET /hello/:id to it.
type stack struct {
	url string
	hub *channels.Hub // the Provider's Config.Channels; nil without channels

	stopEngine context.CancelFunc
	ran        chan struct{} // engine Run returned
	session    *engine.Session
	hs         *http.Server
	served     chan struct{} // hs.Serve returned, nil before it started
}

// startStack starts the engine, registers bench::hello and its trigger,
// and serves the Provider; withChannels gives the Provider a channels.Hub,
// so that every request also opens its two data channels. The hub is not
// served: bench::hello never dials its refs.
func startStack(ctx context.Context, withChannels bool) (*stack, error) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &stack{stopEngine: cancel, ran: make(chan struct{})}
	go func() {
		defer close(s.ran)
		if err := e.Run(runCtx); err != nil {
			log.Printf("engine: %v", err)
		}
	}()
	if err := s.setup(ctx, e, withChannels); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *stack) setup(ctx context.Context, e *engine.Engine, withChannels bool) error {
	if err := e.RegisterFunction(fnHello, "answers GET /hello/:id", engine.HandlerFunc(hello)); err != nil {
		return fmt.Errorf("register %s: %w", fnHello, err)
	}
	var cfg httptrigger.Config
	if withChannels {
		s.hub, _ = channels.New(channels.Config{})
		cfg.Channels = s.hub
	}
	p, err := httptrigger.New(cfg)
	if err != nil {
		return err
	}
	if err := p.Register(e); err != nil {
		return fmt.Errorf("register http trigger type: %w", err)
	}
	if s.session, err = e.Attach(engine.WorkerInfo{Name: "bench"}, nopPeer{}); err != nil {
		return fmt.Errorf("attach worker: %w", err)
	}
	t := engine.Trigger{ID: "bench-hello", Type: httptrigger.TriggerType, FunctionID: fnHello, Config: json.RawMessage(routeConfig)}
	if err := s.session.RegisterTrigger(ctx, t); err != nil {
		return fmt.Errorf("register trigger %s: %w", routeConfig, err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.url = "http://" + lis.Addr().String()
	s.hs = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Printf("http trigger server: %v", err)
		}
	}()
	return nil
}

// close stops the HTTP server, the worker session, the engine and the hub,
// and waits for the goroutines they own.
func (s *stack) close() {
	if s.hs != nil {
		_ = s.hs.Close()
		<-s.served
	}
	if s.session != nil {
		s.session.Close()
	}
	s.stopEngine()
	<-s.ran
	if s.hub != nil {
		s.hub.Close()
	}
}

// nopPeer is the transport of a worker that only owns the trigger: the
// engine never invokes it (bench::hello is built in), and the http trigger
// type is the engine's own, so it configures no trigger either.
type nopPeer struct{}

func (nopPeer) Invoke(context.Context, engine.Invocation) error {
	return errors.New("bench worker serves no function")
}
func (nopPeer) Cancel(string) {}
func (nopPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}
