package channels

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/origin"
)

// Hub holds the live channels, creates them for engine::channels::create and
// serves their WebSocket endpoint. Call Close when done with it.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	origins *origin.Policy

	// ctx is the parent of every channel's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// total bounds the bytes buffered in every channel
	// (Config.MaxTotalBufferBytes).
	total    *semaphore.Weighted
	buffered atomic.Int64 // bytes held in all budgets
	// sessions, set by Register, tells when a creator leaves.
	sessions sessions

	mu       sync.Mutex
	channels map[string]*channel
	owners   map[string]*owner // by worker id, or noSession
	closed   bool
	sweeping bool // the sweeper has started

	// wg counts the sweeper and the ServeHTTP calls that took an end. Add
	// happens under mu while closed is false, so Close's Wait is final.
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Hub. It starts nothing: the sweeper starts with the first
// channel.
func New(cfg Config) (*Hub, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Hub{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, channels: make(map[string]*channel),
		owners: make(map[string]*owner), total: semaphore.NewWeighted(cfg.MaxTotalBufferBytes),
		origins: &origin.Policy{Origins: cfg.AllowedOrigins, Hosts: cfg.AllowedHosts, Logger: cfg.Logger,
			OriginsSetting: "--allowed-origins", HostsSetting: "--allowed-hosts"}}, nil
}

// Close closes every channel (attached ends get 1001, going away), stops the
// sweeper, and returns once every connection it served has ended; that
// includes each close handshake, which coder/websocket bounds at 5s for a
// peer that does not answer. Channels cannot be created afterwards, and the
// endpoint answers 404. Close may be called more than once.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		clear(h.channels)
		clear(h.owners)
		h.mu.Unlock()
		h.cancel(errClosed)
		h.wg.Wait()
		h.log.Info("channels closed")
	})
	return nil
}

// creator is who creates a channel: the owner key and the channel that
// closes when it leaves (see ownerOf); none when ok is false.
type creator struct {
	key  string
	done <-chan struct{}
	ok   bool
}

// open creates and registers a channel buffering size frames for c. local
// is the end the engine itself holds (dirWrite or dirRead), which is taken
// from the start, or "" for none.
func (h *Hub) open(size int, local string, c creator) (*channel, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, engine.Errorf(codes.Unavailable, "channels are shut down")
	}
	if len(h.channels) >= h.cfg.MaxChannels {
		return nil, engine.Errorf(codes.Overloaded, "%d channels are open, the limit is %d (--channels-max)", len(h.channels), h.cfg.MaxChannels)
	}
	caps := []*semaphore.Weighted{semaphore.NewWeighted(h.cfg.MaxBufferBytes)}
	sizes := []int64{h.cfg.MaxBufferBytes}
	var o *owner
	if c.ok {
		o = h.ownerLocked(c.key, c.done)
		if len(o.channels) >= h.cfg.MaxConnChannels {
			return nil, engine.Errorf(codes.Overloaded, "this connection has %d channels open, the limit is %d (--channels-max-per-connection): a channel is removed once its reader has the whole stream, or when its ends have not both attached within %s",
				len(o.channels), h.cfg.MaxConnChannels, h.cfg.TTL)
		}
		caps, sizes = append(caps, o.bytes), append(sizes, h.cfg.MaxConnBufferBytes)
	}
	caps, sizes = append(caps, h.total), append(sizes, h.cfg.MaxTotalBufferBytes)
	ch := newChannel(h.ctx, size, newBudget(caps, sizes, &h.buffered), o)
	if o != nil {
		o.channels[ch] = struct{}{}
	}
	if local != "" {
		*ch.taken(local) = true
	}
	h.channels[ch.id] = ch
	if !h.sweeping {
		h.sweeping = true
		h.wg.Add(1)
		go h.sweep()
	}
	return ch, nil
}

// takeResult is the outcome of take.
type takeResult int

const (
	takeOK       takeResult = iota // the caller now owns the end
	takeNotFound                   // no such channel, or a wrong key
	takeConflict                   // the end was taken before
)

// take claims the end dir of channel id for the caller, who must then call
// h.wg.Done when it is finished with it.
func (h *Hub) take(id, key, dir string) (*channel, takeResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[id]
	if h.closed || ch == nil || subtle.ConstantTimeCompare([]byte(key), []byte(ch.key)) != 1 {
		return nil, takeNotFound
	}
	t := ch.taken(dir)
	if *t {
		return nil, takeConflict
	}
	*t = true
	h.wg.Add(1)
	return ch, takeOK
}

// untake gives back an end whose upgrade failed, so that a real client can
// still take it.
func (h *Hub) untake(ch *channel, dir string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*ch.taken(dir) = false
}

// remove drops ch from the hub (if it is still there) and cancels it with
// cause; the cancel is a no-op for a channel already cancelled.
func (h *Hub) remove(ch *channel, cause error) {
	h.mu.Lock()
	h.unlinkLocked(ch)
	h.mu.Unlock()
	ch.cancel(cause)
}

// unlinkLocked drops ch from the hub and from its owner's count. Callers
// hold h.mu.
func (h *Hub) unlinkLocked(ch *channel) {
	if h.channels[ch.id] == ch {
		delete(h.channels, ch.id)
	}
	if ch.owner != nil {
		delete(ch.owner.channels, ch)
	}
}

// sweep removes, every sweepInterval until Close, the channels whose ends
// have not both attached within the TTL.
func (h *Hub) sweep() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			h.expire(now)
		}
	}
}

func (h *Hub) expire(now time.Time) {
	var dead []*channel
	h.mu.Lock()
	for id, ch := range h.channels {
		if !ch.attached() && now.Sub(ch.created) >= h.cfg.TTL {
			delete(h.channels, id)
			h.unlinkLocked(ch)
			dead = append(dead, ch)
		}
	}
	h.mu.Unlock()
	for _, ch := range dead {
		ch.cancel(errExpired)
		h.log.Debug("channel expired", logChannelID, ch.id)
	}
}
