package grpcserver

import (
	"log/slog"
	"math"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
)

// Config tunes a Server. The zero Config is valid.
type Config struct {
	// MaxMessageBytes is the largest frame received or sent. Default 4 MiB.
	MaxMessageBytes int
	// MaxHeaderBytes bounds the metadata of one RPC (what an auth function
	// gets as headers). Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// SendQueue is the per-session outbound queue length, in frames.
	// Default 1024.
	SendQueue int
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it. Default 10s.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for a ping's answer
	// before closing the connection. Default 5s.
	KeepaliveTimeout time.Duration
	// WorkerIdle is how long a goroutine that ran a worker's call or
	// registration waits for the session's next one before it ends.
	// Default 1s.
	WorkerIdle time.Duration
	// Access, if set, is the listener's authorization policy: every
	// worker session and Trigger call is authenticated from its gRPC
	// metadata (UNAUTHENTICATED when refused) and runs under the Grant.
	// Nil: a trusted listener.
	Access *engine.Access
	// Logger receives per-session logs. Default: discard.
	Logger *slog.Logger
}

// DefaultMaxMessageBytes is the default for Config.MaxMessageBytes.
const DefaultMaxMessageBytes = 4 << 20

// DefaultMaxHeaderBytes is the default for Config.MaxHeaderBytes, as
// http.DefaultMaxHeaderBytes bounds the headers of an HTTP request.
const DefaultMaxHeaderBytes = 1 << 20

// maxRecvBytes is what gRPC itself reads of one frame: twice
// MaxMessageBytes, within what gRPC can take.
func (c Config) maxRecvBytes() int { return int(min(2*int64(c.MaxMessageBytes), math.MaxInt32)) }

func (c Config) withDefaults() Config {
	if c.MaxHeaderBytes <= 0 || c.MaxHeaderBytes > math.MaxUint32 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	defaults.Positive(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	defaults.Positive(&c.SendQueue, 1024)
	defaults.Positive(&c.KeepaliveTime, 10*time.Second)
	defaults.Positive(&c.KeepaliveTimeout, 5*time.Second)
	defaults.Positive(&c.WorkerIdle, time.Second)
	defaults.Logger(&c.Logger)
	return c
}
