package channels

import (
	"github.com/trinehq/trine/engine"
	"golang.org/x/sync/semaphore"
)

// sessions tells the hub when the worker session that made a call ends
// (*engine.Engine implements it).
type sessions interface {
	SessionDone(workerID string) (<-chan struct{}, bool)
}

// owner is a connection that creates channels: it may hold
// Config.MaxConnChannels of them and MaxConnBufferBytes buffered in them.
// Its fields but bytes are guarded by Hub.mu.
type owner struct {
	key      string
	done     <-chan struct{} // closed when it leaves; nil: never
	channels map[*channel]struct{}
	bytes    *semaphore.Weighted
}

// gone reports whether o has left (its channels are being removed).
func (o *owner) gone() bool {
	select {
	case <-o.done:
		return true
	default:
		return false
	}
}

// noSession is the owner key shared by the callers under a policy that
// are no worker session of this engine (the gRPC Trigger RPC).
const noSession = ""

// ownerOf names the connection that makes c: its worker session, with
// the channel that closes when the session ends; noSession for a call
// under a policy from no session; ok false for a trusted caller with no
// session, whose channels only the hub's totals bound.
func (h *Hub) ownerOf(c engine.Call) (key string, done <-chan struct{}, ok bool) {
	if h.sessions != nil {
		if done, ok := h.sessions.SessionDone(c.CallerID); ok {
			return c.CallerID, done, true
		}
	}
	if c.Grant != nil {
		return noSession, nil, true
	}
	return "", nil, false
}

// ownerLocked returns the owner named key, made on first use (or when the
// one of that key has left: a worker that reattached keeps its id); when
// done is set, the owner's channels are removed once it is closed.
// Callers hold h.mu and have checked that the hub is open.
func (h *Hub) ownerLocked(key string, done <-chan struct{}) *owner {
	if o := h.owners[key]; o != nil && !o.gone() {
		return o
	}
	o := &owner{key: key, done: done, channels: make(map[*channel]struct{}), bytes: semaphore.NewWeighted(h.cfg.MaxConnBufferBytes)}
	h.owners[key] = o
	if done != nil {
		h.wg.Add(1)
		go h.release(o, done)
	}
	return o
}

// release removes o's channels (their attached ends get 1001, creator
// gone) when done is closed, or returns when the hub closes.
func (h *Hub) release(o *owner, done <-chan struct{}) {
	defer h.wg.Done()
	select {
	case <-done:
	case <-h.ctx.Done():
		return
	}
	h.mu.Lock()
	if h.owners[o.key] == o {
		delete(h.owners, o.key)
	}
	chs := make([]*channel, 0, len(o.channels))
	for ch := range o.channels {
		chs = append(chs, ch)
		h.unlinkLocked(ch)
	}
	h.mu.Unlock()
	for _, ch := range chs {
		ch.cancel(errCreatorGone)
	}
	if len(chs) > 0 {
		h.log.Debug("channels of a departed connection removed", logOwner, o.key, "channels", len(chs))
	}
}
