// Package enginetest starts a real engine with its gRPC transport on a
// loopback port, for tests of the SDK, the CLI and benchmarks.
package enginetest

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
)

// Server is a running engine.
type Server struct {
	Addr   string
	Engine *engine.Engine

	t      testing.TB
	cfg    engine.Config
	gcfg   grpcserver.Config
	grpc   *grpc.Server
	cancel context.CancelFunc
	served chan struct{}
	ran    chan struct{}
}

// Start runs an engine on 127.0.0.1 with a random port until the test ends.
func Start(t testing.TB, cfg engine.Config, gcfg grpcserver.Config) *Server {
	t.Helper()
	s := &Server{t: t, cfg: cfg, gcfg: gcfg}
	s.start("127.0.0.1:0")
	t.Cleanup(s.Stop)
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
	eng, err := engine.New(s.cfg)
	if err != nil {
		s.t.Fatalf("enginetest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.Addr, s.Engine, s.cancel = lis.Addr().String(), eng, cancel
	s.grpc = grpcserver.New(eng, s.gcfg).NewGRPCServer()
	s.served, s.ran = make(chan struct{}), make(chan struct{})
	go func() { defer close(s.ran); _ = eng.Run(ctx) }()
	go func() { defer close(s.served); _ = s.grpc.Serve(lis) }()
}

// Stop shuts the engine down gracefully (as trine engine does on SIGTERM)
// and waits for it. Stop is idempotent.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.ran
	force := time.AfterFunc(5*time.Second, s.grpc.Stop)
	s.grpc.GracefulStop()
	force.Stop()
	<-s.served
	s.cancel = nil
}

// Kill stops the engine abruptly: connections drop with no drain.
func (s *Server) Kill() {
	if s.cancel == nil {
		return
	}
	s.grpc.Stop()
	<-s.served
	s.cancel()
	<-s.ran
	s.cancel = nil
}

// Restart stops the engine and starts a fresh one (empty registries) on the
// same address.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start(s.Addr)
}
