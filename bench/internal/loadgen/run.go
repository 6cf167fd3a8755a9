package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

// stallTimeout bounds the wait for a window token: a message that has not
// reached every subscriber by then is reported as lost.
const stallTimeout = 15 * time.Second

// Publisher sends messages to the subscribers' group.
type Publisher interface {
	// Publish sends one message whose data is {"ts": <unix nanos now>,
	// …}. It may be called from several goroutines at once.
	Publish() error
	// Goroutines is how many goroutines keep a window of window messages
	// full: window for a call that waits for its result, 1 for a write
	// that does not.
	Goroutines(window int) int
	// Close releases the publisher.
	Close()
}

// TrinePublisher calls stream::set through an SDK worker, writing item x
// of group g of stream bench with data {"ts": <unix nanos now>, "pad":
// …}.
type TrinePublisher struct {
	w      *trine.Worker
	prefix string
	suffix string
	pool   sync.Pool
}

// NewTrinePublisher connects a worker called name to the engine's gRPC
// listener addr. pad is the length of the data's padding.
func NewTrinePublisher(addr, name string, pad int) (*TrinePublisher, error) {
	w := trine.RegisterWorker(addr, trine.WithName(name), trine.WithCloseTimeout(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("connect publisher worker: %w", err)
	}
	return &TrinePublisher{
		w:      w,
		prefix: `{"stream_name":"bench","group_id":"g","item_id":"x","data":{"ts":`,
		suffix: `,"pad":"` + strings.Repeat("x", pad) + `"}}`,
		pool:   sync.Pool{New: func() any { return new([]byte) }},
	}, nil
}

// Publish calls stream::set and waits for its result.
func (p *TrinePublisher) Publish() error {
	bp := p.pool.Get().(*[]byte)
	b := append((*bp)[:0], p.prefix...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, p.suffix...)
	_, err := p.w.Trigger(context.Background(), "stream::set", json.RawMessage(b))
	*bp = b
	p.pool.Put(bp)
	if err != nil {
		return fmt.Errorf("stream::set: %w", err)
	}
	return nil
}

// Goroutines is window: the SDK's Trigger waits for its result.
func (p *TrinePublisher) Goroutines(window int) int { return window }

// Close closes the worker.
func (p *TrinePublisher) Close() { _ = p.w.Close() }

// RunConfig is what Run does.
type RunConfig struct {
	Warmup   time.Duration // publishing before the measured window
	Duration time.Duration // the measured window
	Rate     float64       // messages per second; 0: as fast as the window allows
	Servers  []*Process    // the processes whose CPU time and write calls are measured
}

// Result is what Run measured over its window.
type Result struct {
	Subscribers int
	Deliveries  int64 // messages received, summed over the subscribers
	Elapsed     time.Duration
	P50, P99    time.Duration // end-to-end latency: receipt − the message's ts
	Servers     []Usage       // in RunConfig.Servers' order
	BenchCPU    time.Duration // this process, the load generator
	OtherCPU    time.Duration // every other process on the machine
}

// Usage is what one server process used in the measured window.
type Usage struct {
	Name   string
	CPU    time.Duration // user and system
	Writes int64         // write-like system calls
}

// PerSec is deliveries per second.
func (r Result) PerSec() float64 { return float64(r.Deliveries) / r.Elapsed.Seconds() }

// MsgRate is messages per second: deliveries / subscribers.
func (r Result) MsgRate() float64 { return r.PerSec() / float64(r.Subscribers) }

// ServerCPU is the CPU time of every server process.
func (r Result) ServerCPU() time.Duration {
	var t time.Duration
	for _, u := range r.Servers {
		t += u.CPU
	}
	return t
}

// ServerWrites is the write system calls of every server process.
func (r Result) ServerWrites() int64 {
	var n int64
	for _, u := range r.Servers {
		n += u.Writes
	}
	return n
}

// PerWrite is deliveries per server write system call: how well the
// servers coalesce frames.
func (r Result) PerWrite() float64 {
	w := r.ServerWrites()
	if w == 0 {
		return 0
	}
	return float64(r.Deliveries) / float64(w)
}

// CPUPerDelivery is the server processes' CPU time per delivery.
func (r Result) CPUPerDelivery() time.Duration {
	if r.Deliveries == 0 {
		return 0
	}
	return r.ServerCPU() / time.Duration(r.Deliveries)
}

// Run publishes with pub for cfg.Warmup then cfg.Duration to subs, from
// Connect, with at most subs' window of messages in flight (published but not yet received by
// every subscriber): as fast as possible when cfg.Rate is 0, else
// cfg.Rate messages per second. It records the latencies, the CPU time
// and write calls of cfg.Servers and the CPU time of this process and the
// machine over cfg.Duration, then waits until every message published has
// reached every subscriber, so that subs can Run again.
func Run(subs *Subscribers, pub Publisher, cfg RunConfig) (Result, error) {
	window := subs.window
	var stop atomic.Bool
	errc := make(chan error, window+2)
	var wg sync.WaitGroup
	send := func() bool { // holding a token
		if err := pub.Publish(); err != nil {
			errc <- err
			return false
		}
		return true
	}
	n := pub.Goroutines(window)
	if cfg.Rate <= 0 {
		for range n {
			wg.Go(func() {
				for !stop.Load() {
					if err := subs.acquire(stallTimeout); err != nil {
						errc <- err
						return
					}
					if stop.Load() {
						subs.release()
						return
					}
					if !send() {
						return
					}
				}
			})
		}
	} else {
		jobs := make(chan struct{}, window)
		for range n {
			wg.Go(func() {
				for range jobs {
					if !send() {
						return
					}
				}
			})
		}
		wg.Go(func() { // pacer
			defer close(jobs)
			interval := time.Duration(float64(time.Second) / cfg.Rate)
			start := time.Now()
			for k := int64(0); !stop.Load(); {
				due := int64(time.Since(start) / interval)
				for ; k < due && !stop.Load(); k++ {
					if err := subs.acquire(stallTimeout); err != nil {
						errc <- err
						return
					}
					jobs <- struct{}{}
				}
				if wait := time.Until(start.Add(time.Duration(k+1) * interval)); wait > 0 {
					time.Sleep(wait)
				}
			}
		})
	}
	res := Result{Subscribers: subs.n}
	read := func() (use []Usage, err error) {
		for _, p := range cfg.Servers {
			c, cerr := CPUTime(p.PID)
			w, werr := WriteCalls(p.PID)
			if err := errors.Join(cerr, werr); err != nil {
				return nil, fmt.Errorf("%s: %w", p.Name, err)
			}
			use = append(use, Usage{Name: p.Name, CPU: c, Writes: w})
		}
		return use, nil
	}
	err := func() error {
		if err := subs.sleepOrFail(cfg.Warmup, errc); err != nil {
			return err
		}
		use0, err := read()
		if err != nil {
			return err
		}
		cli0, busy0 := SelfCPU(), MachineBusy()
		subs.hist.Reset()
		subs.recording.Store(true)
		t0 := time.Now()
		err = subs.sleepOrFail(cfg.Duration, errc)
		subs.recording.Store(false)
		res.Elapsed = time.Since(t0)
		res.BenchCPU = SelfCPU() - cli0
		busy := MachineBusy() - busy0
		use1, rerr := read()
		if err := errors.Join(err, rerr); err != nil {
			return err
		}
		for i, u := range use1 {
			u.CPU -= use0[i].CPU
			u.Writes -= use0[i].Writes
			res.Servers = append(res.Servers, u)
		}
		res.OtherCPU = max(0, busy-res.ServerCPU()-res.BenchCPU)
		return nil
	}()
	stop.Store(true)
	wg.Wait()
	if err != nil {
		return res, err
	}
	select {
	case err := <-errc:
		return res, err
	default:
	}
	// Every message published has reached every subscriber once all the
	// window's tokens are back; hand them back for the next run.
	for range window {
		if err := subs.acquire(stallTimeout); err != nil {
			return res, err
		}
	}
	for range window {
		subs.release()
	}
	s := subs.hist.Snapshot()
	res.Deliveries = s.Total()
	res.P50, res.P99 = s.Quantile(0.50), s.Quantile(0.99)
	return res, nil
}

// sleepOrFail sleeps for d unless a publisher or subscriber fails first.
func (f *Subscribers) sleepOrFail(d time.Duration, errc <-chan error) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case err := <-errc:
		return err
	case <-f.dead:
		return f.failErr
	}
}
