package loadgen

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histograms are log-linear, in nanoseconds: exact below 64 ns, then 32
// buckets per power of two (≤ 3% error).
const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histLinear  = 2 * histSub
	histBuckets = histLinear + (64-histSubBits-1)*histSub
	histShards  = 16
)

// Histogram is a latency histogram that any number of goroutines may add
// to at once (with atomics). Its zero value is empty.
type Histogram struct {
	counts [histBuckets]atomic.Int64
	_      [64]byte
}

// Record adds one value of ns nanoseconds (negative: 0).
func (h *Histogram) Record(ns int64) { h.counts[bucketOf(ns)].Add(1) }

// Snapshot returns the counts recorded so far.
func (h *Histogram) Snapshot() Snapshot {
	var s Snapshot
	s.counts = make([]int64, histBuckets)
	for i := range s.counts {
		s.counts[i] = h.counts[i].Load()
		s.total += s.counts[i]
	}
	return s
}

// ShardedHistogram is a Histogram split into shards, so that many
// recording goroutines do not serialise on the same cache lines: each
// records into its own Shard. Its zero value is empty.
type ShardedHistogram struct {
	shards [histShards]Histogram
}

// Shard is the shard for recorder i (any i ≥ 0).
func (h *ShardedHistogram) Shard(i int) *Histogram { return &h.shards[i%histShards] }

// Reset empties every shard.
func (h *ShardedHistogram) Reset() {
	for i := range h.shards {
		for j := range h.shards[i].counts {
			h.shards[i].counts[j].Store(0)
		}
	}
}

// Snapshot sums the shards.
func (h *ShardedHistogram) Snapshot() Snapshot {
	var s Snapshot
	s.counts = make([]int64, histBuckets)
	for i := range h.shards {
		for j := range s.counts {
			s.counts[j] += h.shards[i].counts[j].Load()
		}
	}
	for _, c := range s.counts {
		s.total += c
	}
	return s
}

// Snapshot is the counts of a histogram at one moment.
type Snapshot struct {
	counts []int64
	total  int64
}

// Total is the number of values recorded.
func (s Snapshot) Total() int64 { return s.total }

// Quantile returns the q-quantile (0 if nothing was recorded).
func (s Snapshot) Quantile(q float64) time.Duration {
	if s.total == 0 {
		return 0
	}
	want := int64(q*float64(s.total)) + 1
	var seen int64
	for i, c := range s.counts {
		seen += c
		if seen >= want {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(len(s.counts) - 1))
}

// Max returns the largest value recorded (its bucket's middle; 0 if
// nothing was recorded).
func (s Snapshot) Max() time.Duration {
	for i := len(s.counts) - 1; i >= 0; i-- {
		if s.counts[i] > 0 {
			return time.Duration(bucketValue(i))
		}
	}
	return 0
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < histLinear {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1
	return histLinear + (e-1)*histSub + int((uint64(v)>>e)&(histSub-1))
}

// bucketValue is the middle of bucket i.
func bucketValue(i int) int64 {
	if i < histLinear {
		return int64(i)
	}
	e := (i-histLinear)/histSub + 1
	m := int64((i-histLinear)%histSub + histSub)
	return m<<e + (int64(1)<<e)/2
}

// Add returns the counts of s and o together.
func (s Snapshot) Add(o Snapshot) Snapshot {
	out := Snapshot{counts: make([]int64, histBuckets), total: s.total + o.total}
	for i := range out.counts {
		if i < len(s.counts) {
			out.counts[i] += s.counts[i]
		}
		if i < len(o.counts) {
			out.counts[i] += o.counts[i]
		}
	}
	return out
}
