package channels

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"sync"
	"time"

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

	mu       sync.Mutex
	channels map[string]*channel
	closed   bool
	sweeping bool // the sweeper has started

	// wg counts the sweeper and the ServeHTTP calls that took an end. Add
	// happens under mu while closed is false, so Close's Wait is final.
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Hub. It starts nothing: the sweeper starts with the first
// channel.
func New(cfg Config) *Hub {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Hub{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, channels: make(map[string]*channel),
		origins: &origin.Policy{Origins: cfg.AllowedOrigins, Hosts: cfg.AllowedHosts, Logger: cfg.Logger,
			OriginsSetting: "--allowed-origins", HostsSetting: "--allowed-hosts"}}
}

// Close closes every channel (attached ends get 1001, going away), stops the
// sweeper, and returns once every connection it served has ended; that
// includes each close handshake, which coder/websocket bounds at 5s for a
// peer that does not answer. Channels cannot be created afterwards, and the
// endpoint answers 404. Close may be called more than once.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		clear(h.channels)
		h.mu.Unlock()
		h.cancel(errClosed)
		h.wg.Wait()
		h.log.Info("channels closed")
	})
}

// open creates and registers a channel buffering size frames. local is the
// end the engine itself holds (dirWrite or dirRead), which is taken from
// the start, or "" for none.
func (h *Hub) open(size int, local string) (*channel, error) {
	ch := newChannel(h.ctx, size, h.cfg.MaxBufferBytes)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		ch.cancel(errClosed)
		return nil, engine.Errorf(engine.CodeUnavailable, "channels are shut down")
	}
	if len(h.channels) >= h.cfg.MaxChannels {
		ch.cancel(errClosed)
		return nil, engine.Errorf(engine.CodeOverloaded, "%d channels are open, the limit is %d", len(h.channels), h.cfg.MaxChannels)
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
	if h.channels[ch.id] == ch {
		delete(h.channels, ch.id)
	}
	h.mu.Unlock()
	ch.cancel(cause)
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
			dead = append(dead, ch)
		}
	}
	h.mu.Unlock()
	for _, ch := range dead {
		ch.cancel(errExpired)
		h.log.Debug("channel expired", logChannelID, ch.id)
	}
}
