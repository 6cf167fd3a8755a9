package grpcserver

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/trinehq/trine/engine"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// Server serves trinev1.EngineService on top of an *engine.Engine.
type Server struct {
	trinev1.UnimplementedEngineServiceServer
	e   *engine.Engine
	cfg Config
	log *slog.Logger
}

var _ trinev1.EngineServiceServer = (*Server)(nil)

// New returns a Server for e.
func New(e *engine.Engine, cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{e: e, cfg: cfg, log: cfg.Logger}
}

// ServerOptions are the grpc.Server options the Server's limits and
// keepalive settings need.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(s.cfg.MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: s.cfg.KeepaliveTime, Timeout: s.cfg.KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: s.cfg.KeepaliveTime / 2, PermitWithoutStream: true}),
	}
}

// NewGRPCServer returns a grpc.Server serving s, with ServerOptions and opts.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(append(s.ServerOptions(), opts...)...)
	trinev1.RegisterEngineServiceServer(g, s)
	return g
}

// Trigger calls a function for a caller that is not a worker.
func (s *Server) Trigger(ctx context.Context, req *trinev1.TriggerRequest) (*trinev1.TriggerResponse, error) {
	c := engine.Call{
		FunctionID: req.GetFunctionId(),
		Payload:    req.GetPayload(),
		Metadata:   req.GetMetadata(),
		Timeout:    time.Duration(req.GetTimeoutMs()) * time.Millisecond,
	}
	if req.GetAction() == trinev1.Action_ACTION_VOID {
		return &trinev1.TriggerResponse{}, toStatus(s.e.TriggerVoid(c))
	}
	out, err := s.e.Trigger(ctx, c)
	if err != nil {
		return nil, toStatus(err)
	}
	return &trinev1.TriggerResponse{Result: out}, nil
}
