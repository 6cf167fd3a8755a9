package gateway

import (
	"strconv"
	"sync"
	"time"
)

// Observer receives the gateway's latency samples; cmd/trine exports them
// as Prometheus histograms. Its methods are called from the writers and
// readers of sockets, so they must be cheap and safe for concurrent use.
type Observer interface {
	// Delivered records one live event written to a socket: d is the
	// time from the store's commit (the frame's timestamp, in
	// milliseconds, from the engine's clock) to the end of the write on
	// this gateway (its own clock), 0 when the commit time is ahead.
	// transport is TransportWebSocket or TransportSSE.
	Delivered(transport Transport, d time.Duration)
	// ClientLatency records a sample a page reported: from the commit to
	// when its application had the change (after the callback, at the
	// next frame), by its browser's clock. stream is the subscription's
	// stream name, or OtherStream past Config.StreamLabels.
	ClientLatency(stream string, d time.Duration)
}

// Observer returns Config.Observer, for its exporter to register it.
func (g *Gateway) Observer() Observer { return g.cfg.Observer }

// OtherStream is the label of streams past Config.StreamLabels.
const OtherStream = "_other"

// Defaults for the latency settings of Config.
const (
	DefaultStreamLabels       = 20
	DefaultClientLatencyEvery = 500 * time.Millisecond
	DefaultClientLatencyMax   = time.Minute
)

// streamLabels is the bounded set of stream names that label metrics:
// the first max streams that delivered an event (a stream exists once
// something was written to it, which a browser cannot do by joining).
type streamLabels struct {
	max   int
	mu    sync.RWMutex
	names map[string]struct{}
}

func newStreamLabels(max int) *streamLabels {
	return &streamLabels{max: max, names: make(map[string]struct{})}
}

// learn gives stream a label of its own if there is room.
func (l *streamLabels) learn(stream string) {
	l.mu.Lock()
	if len(l.names) < l.max {
		l.names[stream] = struct{}{}
	}
	l.mu.Unlock()
}

// label is stream's label: its name, or OtherStream.
func (l *streamLabels) label(stream string) string {
	l.mu.RLock()
	_, ok := l.names[stream]
	l.mu.RUnlock()
	if ok {
		return stream
	}
	return OtherStream
}

// delivered reports the live events of a batch whose write just ended.
func (c *conn) delivered(batch []out, transport Transport) {
	if c.g.cfg.Observer == nil {
		return
	}
	var now int64 // read once per batch, if it has live events
	for i := range batch {
		if ms := batch[i].commit; ms != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			c.g.observeDelivery(transport, now, ms)
		}
	}
}

// commitTimes appends the commit times of batch's live events, for a
// write that ends later (conn.slow).
func commitTimes(dst []int64, batch []out) []int64 {
	for i := range batch {
		if ms := batch[i].commit; ms != 0 {
			dst = append(dst, ms)
		}
	}
	return dst
}

// deliveredAt reports live events, by their commit times, whose write
// just ended.
func (c *conn) deliveredAt(commits []int64, transport Transport) {
	if c.g.cfg.Observer == nil || len(commits) == 0 {
		return
	}
	now := time.Now().UnixNano()
	for _, ms := range commits {
		c.g.observeDelivery(transport, now, ms)
	}
}

// observeDelivery records one delivery at now (unix nanoseconds) of an
// event committed at ms (unix milliseconds). A commit time ahead of the
// gateway's clock (the engine's clock is ahead) counts as 0 and as skew.
func (g *Gateway) observeDelivery(transport Transport, now, ms int64) {
	d := time.Duration(now - ms*int64(time.Millisecond))
	if d < 0 {
		g.clockSkew.Add(1)
		d = 0
	}
	g.cfg.Observer.Delivered(transport, d)
}

// clientLatency takes a page's sample: {"subscriptionId", "ms"}. A sample
// of no subscription, negative, over ClientLatencyMax or not a number gets
// a bad_frame error (without a subscriptionId: the subscription goes on);
// one within ClientLatencyEvery of the connection's last accepted sample
// is dropped. Either way it is counted as refused and changes nothing;
// the cost is the same for every frame.
func (c *conn) clientLatency(d *frameData) {
	g := c.g
	refuse := func(msg string) {
		g.latencyRefused.Add(1)
		if msg != "" {
			c.sendError(nil, "bad_frame", msg)
		}
	}
	if d == nil || d.SubscriptionID == nil {
		refuse("latency needs data.subscriptionId and data.ms")
		return
	}
	ms, err := strconv.ParseFloat(string(d.MS), 64)
	if err != nil {
		refuse("latency needs data.ms, a number of milliseconds")
		return
	}
	if ms < 0 || ms > float64(g.cfg.ClientLatencyMax)/float64(time.Millisecond) {
		refuse("latency data.ms must be between 0 and " + strconv.FormatInt(g.cfg.ClientLatencyMax.Milliseconds(), 10))
		return
	}
	c.mu.Lock()
	s := c.subs[*d.SubscriptionID]
	c.mu.Unlock()
	if s == nil {
		refuse("no subscription with this subscriptionId")
		return
	}
	now := time.Now().UnixNano()
	last := c.lastSample.Load()
	if g.cfg.ClientLatencyEvery < 0 || (last != 0 && now-last < int64(g.cfg.ClientLatencyEvery)) || !c.lastSample.CompareAndSwap(last, now) {
		refuse("") // too frequent: the client's sampler may race; no answer
		return
	}
	if g.cfg.Observer != nil {
		g.cfg.Observer.ClientLatency(g.labels.label(s.stream), time.Duration(ms*float64(time.Millisecond)))
	}
}
