// Package enginetest starts a real engine with its gRPC transport on a
// loopback port, for tests, examples and benchmarks.
//
// Concurrency: a test helper. Start serves an engine and its gRPC listener
// on goroutines that t.Cleanup stops and waits for; the values it returns
// are safe for concurrent use by the test's goroutines.
package enginetest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
)

// Running is an engine serving gRPC on a listener, wired as `trine engine`
// wires it.
type Running struct {
	Addr   string
	Engine *engine.Engine

	grpc   *grpc.Server
	cancel context.CancelFunc
	served chan struct{}
	ran    chan struct{}
	once   sync.Once
}

// Serve runs an engine on lis until Stop or Kill.
func Serve(lis net.Listener, cfg engine.Config, gcfg grpcserver.Config) (*Running, error) {
	eng, err := engine.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Addr: lis.Addr().String(), Engine: eng, cancel: cancel,
		grpc: grpcserver.New(eng, gcfg).NewGRPCServer(), served: make(chan struct{}), ran: make(chan struct{})}
	go func() { defer close(r.ran); _ = eng.Run(ctx) }()
	go func() { defer close(r.served); _ = r.grpc.Serve(lis) }()
	return r, nil
}

// Stop shuts the engine down gracefully (as trine engine does on SIGTERM)
// and waits for it. Stop and Kill are idempotent, and only the first runs.
func (r *Running) Stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.ran
		force := time.AfterFunc(5*time.Second, r.grpc.Stop)
		r.grpc.GracefulStop()
		force.Stop()
		<-r.served
	})
}

// Kill stops the engine abruptly: connections drop with no drain.
func (r *Running) Kill() {
	r.once.Do(func() {
		r.grpc.Stop()
		<-r.served
		r.cancel()
		<-r.ran
	})
}

// Server is a Running engine owned by a test.
type Server struct {
	*Running
	t    testing.TB
	cfg  engine.Config
	gcfg grpcserver.Config
}

// Start runs an engine on 127.0.0.1 with a random port until the test ends.
func Start(t testing.TB, cfg engine.Config, gcfg grpcserver.Config) *Server {
	t.Helper()
	s := &Server{t: t, cfg: cfg, gcfg: gcfg}
	s.start("127.0.0.1:0")
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Server) start(addr string) {
	s.t.Helper()
	var lis net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; { // a restart may race the old socket's release
		lis, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("enginetest: listen: %v", err)
	}
	r, err := Serve(lis, s.cfg, s.gcfg)
	if err != nil {
		s.t.Fatalf("enginetest: %v", err)
	}
	s.Running = r
}

// Restart kills the engine and starts a fresh one (empty registries) on the
// same address.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start(s.Addr)
}

// Run starts an engine with no transport, for tests of packages that sit on
// top of it (modules, transports); it is shut down when the test ends.
func Run(t testing.TB, cfg engine.Config) *engine.Engine {
	t.Helper()
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	return e
}

// ServeGRPC serves an engine the test already runs over gRPC on a loopback
// port until the test ends, and returns the address.
func ServeGRPC(t testing.TB, eng *engine.Engine, gcfg grpcserver.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("enginetest: listen: %v", err)
	}
	srv := grpcserver.New(eng, gcfg).NewGRPCServer()
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return lis.Addr().String()
}
