package main

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

// publisher calls stream::set through an SDK worker with data {"ts": <unix
// nanos now>, "pad": …}; publish may be called from several goroutines at
// once. (bench/fanout's trinePublisher.)
type publisher struct {
	w      *trine.Worker
	prefix string
	suffix string
	pool   sync.Pool
}

func newPublisher(addr string, pad int) (*publisher, error) {
	w := trine.RegisterWorker(addr, trine.WithName("bench-fleet-publisher"), trine.WithCloseTimeout(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("connect publisher worker: %w", err)
	}
	return &publisher{
		w:      w,
		prefix: `{"stream_name":"bench","group_id":"g","item_id":"x","data":{"ts":`,
		suffix: `,"pad":"` + strings.Repeat("x", pad) + `"}}`,
		pool:   sync.Pool{New: func() any { return new([]byte) }},
	}, nil
}

func (p *publisher) publish() error {
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

func (p *publisher) close() { _ = p.w.Close() }

// procStat is one server process's share of a run.
type procStat struct {
	name   string
	subs   int           // subscribers on its stream listener
	cpu    time.Duration // CPU time over the measured window
	writes int64         // write system calls over the measured window
}

// runResult is one measured mode.
type runResult struct {
	subscribers int
	deliveries  int64
	elapsed     time.Duration
	p50, p99    time.Duration
	procs       []procStat
	cliCPU      time.Duration // this load generator
	otherCPU    time.Duration // every other process on the machine
}

func (r runResult) perSec() float64 { return float64(r.deliveries) / r.elapsed.Seconds() }

// msgRate is messages per second: deliveries / subscribers.
func (r runResult) msgRate() float64 { return r.perSec() / float64(r.subscribers) }

// srvCPU is the CPU time of every server process.
func (r runResult) srvCPU() time.Duration {
	var t time.Duration
	for _, p := range r.procs {
		t += p.cpu
	}
	return t
}

// cores is the number of CPU cores the server processes used, on average.
func (r runResult) cores() float64 { return r.srvCPU().Seconds() / r.elapsed.Seconds() }

// perCore is deliveries per second per server core used.
func (r runResult) perCore() float64 {
	if c := r.cores(); c > 0 {
		return r.perSec() / c
	}
	return 0
}

// cpuPerDelivery is the server processes' CPU time per delivery.
func (r runResult) cpuPerDelivery() time.Duration {
	if r.deliveries == 0 {
		return 0
	}
	return r.srvCPU() / time.Duration(r.deliveries)
}

// run publishes as fast as the window allows (at most window messages
// published but not yet received by every subscriber) for warmup then d.
// It records the latencies and the CPU time of every process in procs over
// d, then waits until every message published has reached every
// subscriber. subs[i] is the number of subscribers of procs[i].
// (bench/fanout's run at max rate, measuring several processes.)
func run(f *fanout, pub *publisher, procs []*proc, subs []int, window int, warmup, d time.Duration) (runResult, error) {
	var stop atomic.Bool
	errc := make(chan error, window+2)
	var wg sync.WaitGroup
	for range window { // the SDK's Trigger waits for its result
		wg.Go(func() {
			for !stop.Load() {
				if err := f.acquire(stallTimeout); err != nil {
					errc <- err
					return
				}
				if stop.Load() {
					f.tokens <- struct{}{}
					return
				}
				if err := pub.publish(); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	res := runResult{subscribers: f.n}
	read := func() (cpu []time.Duration, writes []int64, err error) {
		for _, p := range procs {
			c, cerr := cpuTime(p.pid)
			w, werr := writeCalls(p.pid)
			if err := errors.Join(cerr, werr); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", p.name, err)
			}
			cpu, writes = append(cpu, c), append(writes, w)
		}
		return cpu, writes, nil
	}
	err := func() error {
		if err := sleepOrFail(warmup, errc, f); err != nil {
			return err
		}
		cpu0, w0, err := read()
		if err != nil {
			return err
		}
		cli0, busy0 := selfCPU(), machineBusy()
		f.hist.reset()
		f.recording.Store(true)
		t0 := time.Now()
		err = sleepOrFail(d, errc, f)
		f.recording.Store(false)
		res.elapsed = time.Since(t0)
		res.cliCPU = selfCPU() - cli0
		busy := machineBusy() - busy0
		cpu1, w1, rerr := read()
		if err := errors.Join(err, rerr); err != nil {
			return err
		}
		for i, p := range procs {
			res.procs = append(res.procs, procStat{name: p.name, subs: subs[i], cpu: cpu1[i] - cpu0[i], writes: w1[i] - w0[i]})
		}
		res.otherCPU = max(0, busy-res.srvCPU()-res.cliCPU)
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
		if err := f.acquire(stallTimeout); err != nil {
			return res, err
		}
	}
	for range window {
		f.tokens <- struct{}{}
	}
	counts, total := f.hist.snapshot()
	res.deliveries = total
	res.p50, res.p99 = quantile(counts, total, 0.50), quantile(counts, total, 0.99)
	return res, nil
}

// sleepOrFail sleeps for d unless a publisher or subscriber fails first.
func sleepOrFail(d time.Duration, errc <-chan error, f *fanout) error {
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
