package grpcserver

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/ratelog"
	"github.com/trinehq/trine/internal/tlsconf"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// Server serves trinev1.EngineService on top of an *engine.Engine.
type Server struct {
	trinev1.UnimplementedEngineServiceServer
	e   *engine.Engine
	cfg Config
	log *slog.Logger

	refusals atomic.Int64
	// refusalLog limits the logs of refused connections and calls.
	refusalLog ratelog.Limiter
}

var _ trinev1.EngineServiceServer = (*Server)(nil)

// WindowBytes is the HTTP/2 flow-control window of a stream and of a
// connection (the most bytes a peer may send ahead of what is read),
// fixed: see ServerOptions. The Go SDK uses the same.
const WindowBytes = 1 << 20

// New returns a Server for e.
func New(e *engine.Engine, cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{e: e, cfg: cfg, log: cfg.Logger}
}

// ServerOptions are the grpc.Server options the Server's limits and
// keepalive settings need.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// gRPC reads a frame up to twice the limit, so that one over it is
		// refused by the Server with Trine's message_too_large (a reason
		// a client can act on) rather than by gRPC with a bare
		// RESOURCE_EXHAUSTED; past twice, gRPC refuses it unread.
		grpc.MaxRecvMsgSize(s.cfg.maxRecvBytes()),
		grpc.MaxSendMsgSize(s.cfg.MaxMessageBytes),
		// The metadata of one RPC (what an auth function gets as headers),
		// bounded as net/http bounds a request's headers.
		grpc.MaxHeaderListSize(uint32(s.cfg.MaxHeaderBytes)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: s.cfg.KeepaliveTime, Timeout: s.cfg.KeepaliveTimeout}),
		// Fixed flow-control windows: gRPC's dynamic window sends a
		// BDP ping, and gets its ack, with nearly every small message
		// read, two frames on top of each call and result. A larger
		// message still gets the window it needs as it is read.
		grpc.StaticStreamWindowSize(WindowBytes),
		grpc.StaticConnWindowSize(WindowBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: s.cfg.KeepaliveTime / 2, PermitWithoutStream: true}),
	}
}

// NewGRPCServer returns a grpc.Server serving s, with ServerOptions and opts.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(append(s.ServerOptions(), opts...)...)
	trinev1.RegisterEngineServiceServer(g, s)
	return g
}

// Trigger calls a function for a caller that is not a worker. On a
// listener with a policy each call is authenticated (the auth function
// runs per call) and decided like a session's.
func (s *Server) Trigger(ctx context.Context, req *trinev1.TriggerRequest) (*trinev1.TriggerResponse, error) {
	c := engine.Call{
		FunctionID: req.GetFunctionId(),
		Payload:    req.GetPayload(),
		Metadata:   req.GetMetadata(),
		Timeout:    time.Duration(req.GetTimeoutMs()) * time.Millisecond,
	}
	if err := s.checkSize(req); err != nil {
		return nil, toStatus(err)
	}
	grant, err := s.authenticate(ctx, AuthInput(ctx))
	if err != nil {
		return nil, toStatus(err)
	}
	if c, err = s.e.Authorize(grant, c); err != nil {
		return nil, toStatus(err)
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

// checkSize refuses a message over MaxMessageBytes that gRPC let through
// (see ServerOptions).
func (s *Server) checkSize(m proto.Message) error {
	if n := proto.Size(m); n > s.cfg.MaxMessageBytes {
		return engine.Errorf(codes.MessageTooLarge, "the message is %d bytes, the limit is %d (--max-message-bytes)", n, s.cfg.MaxMessageBytes)
	}
	return nil
}

// authenticate admits a caller under the listener's Access: nil Grant
// and no error on a trusted listener.
func (s *Server) authenticate(ctx context.Context, in engine.AuthInput) (*engine.Grant, error) {
	if s.cfg.Access == nil {
		return nil, nil
	}
	g, err := s.e.Authenticate(ctx, s.cfg.Access, in)
	if err != nil {
		s.refusals.Add(1)
		s.refusalLog.Warn(s.log, "gRPC connection refused", "remote", in.IPAddress, "error", err)
	}
	return g, err
}

// AuthRefusals counts the callers and sessions the listener's policy
// refused.
func (s *Server) AuthRefusals() int64 { return s.refusals.Load() }

// AuthInput is what the auth function learns of a gRPC caller: its
// metadata as headers (authorization: Bearer … included; pseudo-headers
// left out), its IP address and, over mTLS, the client certificate's
// identity. gRPC has no query parameters.
func AuthInput(ctx context.Context) engine.AuthInput {
	in := engine.AuthInput{Headers: map[string]string{}, QueryParams: map[string][]string{}}
	md, _ := metadata.FromIncomingContext(ctx)
	for k, v := range md {
		if !strings.HasPrefix(k, ":") {
			in.Headers[k] = strings.Join(v, ", ")
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		in.IPAddress = p.Addr.String()
		if host, _, err := net.SplitHostPort(in.IPAddress); err == nil {
			in.IPAddress = host
		}
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			in.Identity = tlsconf.Identity(&ti.State)
		}
	}
	return in
}
