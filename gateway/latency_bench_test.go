package gateway

import (
	"fmt"
	"math"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type nopObserver struct{}

func (nopObserver) ClientLatency(string, time.Duration) {}

// TestDeliveryHistogramMatchesPrometheus: written from many goroutines,
// the delivery histogram holds what a prometheus.Histogram with the same
// bounds, given the same samples, holds: count, sum and every bucket,
// bounds inclusive.
func TestDeliveryHistogramMatchesPrometheus(t *testing.T) {
	t.Parallel()
	g := &Gateway{cfg: Config{Observer: nopObserver{}}}
	ph := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d", Buckets: DeliveryBounds()})
	now := time.Now().UnixMilli()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			c := &conn{g: g}
			for i := range 500 {
				// Commit times i*w ms ago, some on a bound, one past the last.
				ms := []int64{now - int64(i*w), now - int64(i), now - 1<<(i%16), now - 20000*int64(i%2)}
				lb := c.latencyBatch(TransportWebSocket)
				for _, m := range ms {
					lb.now = now * int64(time.Millisecond)
					lb.add(m)
					mu.Lock()
					ph.Observe(time.Duration(lb.now - m*int64(time.Millisecond)).Seconds())
					mu.Unlock()
				}
				lb.done()
			}
		})
	}
	wg.Wait()
	var want dto.Metric
	if err := ph.Write(&want); err != nil {
		t.Fatal(err)
	}
	got, w := g.DeliveryLatency(TransportWebSocket), want.GetHistogram()
	if got.Count != w.GetSampleCount() || math.Abs(got.Sum.Seconds()-w.GetSampleSum()) > 1e-6 {
		t.Errorf("count %d sum %v, want %d and %gs", got.Count, got.Sum, w.GetSampleCount(), w.GetSampleSum())
	}
	for i, b := range w.GetBucket() {
		if got.Buckets[i] != b.GetCumulativeCount() {
			t.Errorf("bucket le=%g: %d, want %d", b.GetUpperBound(), got.Buckets[i], b.GetCumulativeCount())
		}
	}
	if h := g.DeliveryLatency(TransportSSE); h.Count != 0 {
		t.Errorf("%d sse samples, want 0", h.Count)
	}
}

// promObserver records each delivery into a prometheus.Histogram, as
// cmd/trine did before the gateway kept its own histogram.
type promObserver struct{ h prometheus.Observer }

// BenchmarkDelivered is what trine_stream_delivery_seconds costs per
// delivery on the writers' path: a clock read per socket write and the
// recording of each live event in it, on as many writers as GOMAXPROCS
// (the writer pool). batch=1 is a light rate, one event per write;
// batch=10 is max rate, where a write carries about ten. off is no
// Observer (nothing recorded, no clock read); prometheus records each
// event into a client_golang histogram, as before; sharded is the
// gateway's histogram. Read cpu-ns/op, the process's CPU per delivery,
// which other work on the machine inflates less than ns/op:
//
//	go test -run '^$' -bench Delivered -cpu 1,2 ./gateway
func BenchmarkDelivered(b *testing.B) {
	prom := promObserver{prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "d", Buckets: DeliveryBounds()}, []string{"transport"}).WithLabelValues("ws")}
	for _, n := range []int{1, 10} {
		for _, mode := range []string{"off", "prometheus", "sharded"} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode, n), func(b *testing.B) {
				g := &Gateway{}
				if mode != "off" {
					g.cfg.Observer = nopObserver{}
				}
				commit := time.Now().UnixMilli()
				cpu := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					c := &conn{g: g}
					batch := make([]out, n)
					for i := range batch {
						batch[i].commit = commit
					}
					for pb.Next() {
						if mode != "prometheus" {
							c.delivered(batch, TransportWebSocket)
							continue
						}
						now := time.Now().UnixNano()
						for i := range batch {
							prom.h.Observe(time.Duration(now - batch[i].commit*int64(time.Millisecond)).Seconds())
						}
					}
				})
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N*n), "cpu-ns/op")
			})
		}
	}
}

// processCPU is the process's CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
