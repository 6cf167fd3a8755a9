package gateway

import (
	"math/bits"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Observer receives the latency samples pages report; cmd/trine exports
// them as Prometheus histograms. With an Observer set, the gateway also
// keeps the delivery latency of every live event it writes
// (DeliveryLatency). Its method is called from the readers of sockets,
// so it must be cheap and safe for concurrent use.
type Observer interface {
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

// deliveryBuckets is how many bounded buckets the delivery latency
// histogram has: bucket i holds (2^(i-1), 2^i] ms, from 1 ms to 16.384 s;
// a last one holds the rest.
const deliveryBuckets = 15

// DeliveryBounds are the upper bounds of the delivery latency buckets, in
// seconds.
func DeliveryBounds() []float64 {
	out := make([]float64, deliveryBuckets)
	for i := range out {
		out[i] = float64(int64(1)<<i) / 1000
	}
	return out
}

// Histogram is a snapshot of the delivery latencies of one transport.
type Histogram struct {
	Count uint64
	Sum   time.Duration
	// Buckets[i] counts the samples of at most DeliveryBounds()[i]
	// (cumulative, as Prometheus's buckets).
	Buckets [deliveryBuckets]uint64
}

// DeliveryLatency is the histogram of the time from the store's commit
// (the frame's timestamp, in milliseconds, from the engine's clock) to the
// end of the write to a socket on this gateway (its own clock) of every
// live event written over transport since the gateway started, 0 when the
// commit time was ahead. It stays empty without Config.Observer.
func (g *Gateway) DeliveryLatency(t Transport) Histogram {
	h := &g.delivery[t]
	var counts [deliveryBuckets + 1]uint64
	var out Histogram
	for i := range h.shards {
		s := &h.shards[i]
		for j := range counts {
			counts[j] += s.counts[j].Load()
		}
		out.Sum += time.Duration(s.sum.Load())
	}
	var n uint64
	for j := range deliveryBuckets {
		n += counts[j]
		out.Buckets[j] = n
	}
	out.Count = n + counts[deliveryBuckets]
	return out
}

// latencyShards is how many shards a latencyHist spreads its writes
// over, so that the writers (one per core) seldom meet on one.
const latencyShards = 16

// latencyHist is a histogram that every socket writer records into at
// once: a write adds its events' buckets and sum to one shard, picked at
// random, with two atomic adds when they fall in one bucket. (A
// prometheus.Histogram takes four atomic adds per event, on lines every
// writer shares: BenchmarkDelivered in bench/README.md.)
type latencyHist struct {
	shards [latencyShards]latencyShard
}

type latencyShard struct {
	counts [deliveryBuckets + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
	_      [56]byte     // the next shard starts on a cache line of its own
}

// deliveryBucket is the bucket of d.
func deliveryBucket(d time.Duration) int {
	if d <= time.Millisecond {
		return 0
	}
	return min(bits.Len64(uint64((d-1)/time.Millisecond)), deliveryBuckets)
}

// latencyBatch gathers the samples of one write, to add them to the
// histogram in runs of one bucket.
type latencyBatch struct {
	g     *Gateway
	shard *latencyShard
	now   int64 // unix nanoseconds, read once per write
	last  int   // the bucket of the run not added yet
	run   uint64
	sum   int64
}

func (c *conn) latencyBatch(transport Transport) latencyBatch {
	return latencyBatch{g: c.g, shard: &c.g.delivery[transport].shards[rand.Uint32()%latencyShards]}
}

// add takes the sample of an event committed at ms (unix milliseconds). A
// commit time ahead of the gateway's clock (the engine's clock is ahead)
// counts as 0 and as skew.
func (b *latencyBatch) add(ms int64) {
	if b.now == 0 {
		b.now = time.Now().UnixNano()
	}
	d := time.Duration(b.now - ms*int64(time.Millisecond))
	if d < 0 {
		b.g.clockSkew.Add(1)
		d = 0
	}
	i := deliveryBucket(d)
	if b.run > 0 && i != b.last {
		b.shard.counts[b.last].Add(b.run)
		b.run = 0
	}
	b.last = i
	b.run++
	b.sum += int64(d)
}

// done adds what add gathered.
func (b *latencyBatch) done() {
	if b.run > 0 {
		b.shard.counts[b.last].Add(b.run)
		b.shard.sum.Add(b.sum)
	}
}

// delivered reports the live events of a batch whose write just ended.
func (c *conn) delivered(batch []out, transport Transport) {
	if c.g.cfg.Observer == nil {
		return
	}
	lb := c.latencyBatch(transport)
	for i := range batch {
		if ms := batch[i].commit; ms != 0 {
			lb.add(ms)
		}
	}
	lb.done()
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
	lb := c.latencyBatch(transport)
	for _, ms := range commits {
		lb.add(ms)
	}
	lb.done()
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
	s := c.subs.get(*d.SubscriptionID)
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
