package channels

import (
	"log/slog"
	"time"

	"github.com/trinehq/trine/internal/defaults"
)

// Defaults for Config.
const (
	DefaultBuffer         = 64
	DefaultMaxBuffer      = 1024
	DefaultMaxFrameBytes  = 1 << 20
	DefaultTTL            = 5 * time.Minute
	DefaultMaxBufferBytes = 16 << 20
	DefaultMaxChannels    = 10000
	// DefaultMaxConnChannels and DefaultMaxConnBufferBytes bound what one
	// connection holds: room for several concurrent streams (an http
	// trigger's request and response take two) at the 16 MiB a channel
	// may buffer, but not for one client to take the process.
	DefaultMaxConnChannels    = 64
	DefaultMaxConnBufferBytes = 64 << 20
	// DefaultMaxTotalBufferBytes bounds the bytes buffered in all
	// channels at once: eight connections at their full allowance.
	DefaultMaxTotalBufferBytes = 512 << 20
)

// Config tunes a Hub. The zero Config is valid.
type Config struct {
	// DefaultBuffer is the number of frames buffered between the writer and
	// the reader (before the reader attaches, or while it is slow) when the
	// caller asks for no buffer_size. Default 64; capped at MaxBuffer.
	DefaultBuffer int
	// MaxBuffer is the largest buffer_size a caller may ask for.
	// Default 1024.
	MaxBuffer int
	// MaxBufferBytes bounds the bytes buffered in one channel, whatever
	// its buffer_size: a writer that far ahead of its reader is not read
	// until the reader catches up. Default 16 MiB.
	MaxBufferBytes int64
	// MaxChannels bounds the channels open at once; engine::channels::create
	// beyond it fails with overloaded. Default 10,000.
	MaxChannels int
	// MaxConnChannels bounds the channels one connection has created and
	// that are still open (a worker session: Call.CallerID; calls from
	// no session under a listener's policy share one allowance, calls
	// from no session on a trusted listener have none);
	// engine::channels::create beyond it fails with overloaded. Default
	// 64.
	MaxConnChannels int
	// MaxConnBufferBytes bounds the bytes buffered in the channels one
	// connection created, together: a writer that would go past it is not
	// read until readers catch up. Default 64 MiB.
	MaxConnBufferBytes int64
	// MaxTotalBufferBytes bounds the bytes buffered in every channel of
	// the hub, local ends included, in the same way. Default 512 MiB.
	// A writer waits before its frame is read off the socket, so the
	// channels never hold more than this (a frame larger than a bound
	// counts as that bound).
	MaxTotalBufferBytes int64
	// MaxFrameBytes is the largest frame a writer may send; a larger one
	// closes the writer with 1009 (message too big). Default 1 MiB (the
	// iii Go SDK sends binary data in 64 KiB frames). Readers must accept
	// frames of this size.
	MaxFrameBytes int64
	// TTL is how long a channel may wait for both its ends to attach;
	// then it is removed and any attached end is closed. Default 5m.
	TTL time.Duration
	// AllowedOrigins lists the browser origins allowed to open an end
	// besides the listener's own host ("*" allows any); requests without
	// an Origin header are always allowed. Others get 403.
	AllowedOrigins []string
	// AllowedHosts lists the listener's public host names (see
	// internal/origin): on a loopback listener, only loopback hosts and
	// these are accepted.
	AllowedHosts []string
	// Logger receives channel lifecycle logs. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	defaults.Positive(&c.MaxBuffer, DefaultMaxBuffer)
	defaults.Positive(&c.DefaultBuffer, DefaultBuffer)
	c.DefaultBuffer = min(c.DefaultBuffer, c.MaxBuffer)
	defaults.Positive(&c.MaxFrameBytes, DefaultMaxFrameBytes)
	defaults.Positive(&c.TTL, DefaultTTL)
	defaults.Positive(&c.MaxBufferBytes, DefaultMaxBufferBytes)
	defaults.Positive(&c.MaxChannels, DefaultMaxChannels)
	defaults.Positive(&c.MaxConnChannels, DefaultMaxConnChannels)
	defaults.Positive(&c.MaxConnBufferBytes, DefaultMaxConnBufferBytes)
	defaults.Positive(&c.MaxTotalBufferBytes, DefaultMaxTotalBufferBytes)
	defaults.Logger(&c.Logger)
	return c
}

// sweepInterval is how often the sweeper looks for expired channels: a
// channel is removed between TTL and 1.25×TTL after its creation.
func (c Config) sweepInterval() time.Duration {
	return min(max(c.TTL/4, time.Millisecond), 30*time.Second)
}
