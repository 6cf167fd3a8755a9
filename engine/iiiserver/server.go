package iiiserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/internal/httpinvoke"
	"github.com/trinehq/trine/internal/origin"
	"github.com/trinehq/trine/internal/ratelog"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/internal/wsconn"
)

// Config tunes a Server. The zero Config is valid.
type Config struct {
	// MaxMessageBytes is the largest message received or sent. Default 4 MiB.
	MaxMessageBytes int64
	// SendQueue is the per-connection outbound queue, in messages.
	// Default 1024.
	SendQueue int
	// NamespaceGrace is how long registrations wait for the worker's
	// engine::workers::register call before they are applied anyway.
	// Default 5s.
	NamespaceGrace time.Duration
	// PingInterval is how often the server pings a worker at the
	// WebSocket level; a worker from which nothing was read for
	// PingInterval plus WriteTimeout is disconnected. Default 15s.
	PingInterval time.Duration
	// WriteTimeout bounds one write (a batch of messages) or the upgrade;
	// a worker that does not take a write in time is disconnected.
	// Default 10s.
	WriteTimeout time.Duration
	// Channels, if set, serves /ws/channels/{id} on the same listener.
	Channels http.Handler
	// AllowedOrigins lists the browser origins allowed to connect besides
	// the listener's own host ("*" allows any), for iii's browser SDK.
	// Requests without an Origin header (workers) are allowed.
	AllowedOrigins []string
	// AllowedHosts lists the listener's public host names: the Host values
	// it accepts besides loopback ones (on a loopback listener, only
	// those). See internal/origin.
	AllowedHosts []string
	// Access, if set, is the listener's authorization policy (iii's
	// rbac block): each connection is authenticated before the upgrade
	// (401 when refused) and its session runs under the Grant. Nil: a
	// trusted listener.
	Access *engine.Access
	// HTTPInvoker, if set, serves registrations with an invocation block
	// (HTTP-invoked functions); without it they are refused.
	HTTPInvoker *httpinvoke.Invoker
	// Telemetry, if set, receives the OTLP traces iii workers push over
	// /otel or their worker socket, so that their spans join the engine's
	// traces; without it (tracing off) they are dropped and counted
	// (TelemetryDropped), as metrics and logs always are.
	Telemetry Telemetry
	// TelemetryBytesPerSecond bounds the traces forwarded from all
	// connections together, in bytes a second (with a burst of
	// MaxMessageBytes); more is dropped. Default
	// DefaultTelemetryBytesPerSecond.
	TelemetryBytesPerSecond int
	// Logger receives per-connection logs. Default: discard.
	Logger *slog.Logger
}

// DefaultMaxMessageBytes is the default for Config.MaxMessageBytes.
const DefaultMaxMessageBytes = 4 << 20

func (c Config) withDefaults() Config {
	defaults.Positive(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	defaults.Positive(&c.SendQueue, 1024)
	defaults.Positive(&c.NamespaceGrace, 5*time.Second)
	defaults.Positive(&c.PingInterval, 15*time.Second)
	defaults.Positive(&c.WriteTimeout, 10*time.Second)
	defaults.Positive(&c.TelemetryBytesPerSecond, DefaultTelemetryBytesPerSecond)
	defaults.Logger(&c.Logger)
	return c
}

// Server serves iii's worker protocol: GET / upgrades to a worker
// connection, GET /ws/channels/{id} is handed to Config.Channels.
type Server struct {
	e       *engine.Engine
	cfg     Config
	log     *slog.Logger
	origins *origin.Policy
	// refusalLog limits the logs of refused connections.
	refusalLog ratelog.Limiter

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup

	refusals atomic.Int64

	telemetryRate      *rate.Limiter // of Config.TelemetryBytesPerSecond
	telemetryForwarded atomic.Uint64
	telemetryDropped   atomic.Uint64
}

// AuthRefusals counts the worker connections the listener's policy
// refused.
func (s *Server) AuthRefusals() int64 { return s.refusals.Load() }

// New returns a Server for e.
func New(e *engine.Engine, cfg Config) *Server {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{e: e, cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, conns: make(map[*conn]struct{}), telemetryRate: newTelemetryRate(cfg),
		origins: &origin.Policy{Origins: cfg.AllowedOrigins, Hosts: cfg.AllowedHosts, Logger: cfg.Logger,
			OriginsSetting: "--allowed-origins", HostsSetting: "--allowed-hosts"}}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ref := s.origins.Check(r); ref != nil {
		http.Error(w, ref.Reason, ref.Status)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/ws/channels/") && s.cfg.Channels != nil:
		s.cfg.Channels.ServeHTTP(w, r)
	case r.URL.Path == "/" || r.URL.Path == "/otel":
		s.serveWorker(w, r)
	default:
		http.NotFound(w, r)
	}
}

// Close disconnects every worker and waits for their connections to end.
// Later connections are refused.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.stop(wsconn.CloseGoingAway, "server closing")
	}
	s.wg.Wait()
}

func (s *Server) serveWorker(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "server closing", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	// The origin was checked by ServeHTTP. /otel admits whom the worker
	// socket admits: what it takes goes to the operator's trace collector.
	var grant *engine.Grant
	if a := s.cfg.Access; a != nil {
		g, err := s.e.Authenticate(r.Context(), a, AuthInput(r))
		if err != nil {
			s.refusals.Add(1)
			s.refusalLog.Warn(s.log, "iii worker connection refused", "remote", r.RemoteAddr, "error", err)
			http.Error(w, engine.AsError(err).Message, http.StatusUnauthorized)
			return
		}
		grant = g
	}
	nc, src, err := wsconn.Upgrade(w, r, s.cfg.WriteTimeout)
	if err != nil {
		s.log.Debug("iii worker upgrade failed", "remote", r.RemoteAddr, "error", err)
		return // the upgrader answered the request
	}
	sock := wsconn.NewConn(nc, src, readBuffer, s.cfg.MaxMessageBytes, s.cfg.WriteTimeout)
	if r.URL.Path == "/otel" {
		s.telemetry(sock)
		return
	}
	c := newConn(s, sock, r.RemoteAddr, tlsconf.Identity(r.TLS), grant)
	if c == nil {
		_ = nc.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.stop(wsconn.CloseGoingAway, "server closing")
		c.finish()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.run()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// telemetry serves a telemetry-only socket: its binary frames are taken
// as telemetry (telemetryFrame) and anything else is dropped, until the
// worker goes or the server closes.
func (s *Server) telemetry(sock *wsconn.Conn) {
	defer sock.NC.Close()
	stop := context.AfterFunc(s.ctx, func() {
		if sock.Close(wsconn.CloseGoingAway, "server closing") {
			_ = sock.NC.SetReadDeadline(time.Now().Add(wsconn.CloseGrace))
		}
	})
	defer stop()
	for {
		op, b, err := sock.Next()
		if err != nil {
			sock.CloseAfter(err)
			return
		}
		if op == wsconn.OpBinary {
			s.telemetryFrame(b)
		}
	}
}

// readBuffer is the size of a worker socket's read buffer.
const readBuffer = 4 << 10

// AuthInput is what the auth function learns of an upgrade request: its
// headers (names lowercased, values joined with ", "), query parameters,
// the peer's IP address and, over mTLS, the client certificate's
// identity.
func AuthInput(r *http.Request) engine.AuthInput {
	in := engine.AuthInput{Headers: make(map[string]string, len(r.Header)), QueryParams: r.URL.Query(), Identity: tlsconf.Identity(r.TLS)}
	for k, v := range r.Header {
		in.Headers[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	if in.QueryParams == nil {
		in.QueryParams = map[string][]string{}
	}
	in.IPAddress = r.RemoteAddr
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		in.IPAddress = host
	}
	return in
}
