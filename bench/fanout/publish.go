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

	"github.com/coder/websocket"

	trine "github.com/trinehq/trine/worker-sdk"
)

// stallTimeout bounds the wait for a window token: a message that has not
// reached every subscriber by then is reported as lost.
const stallTimeout = 15 * time.Second

// publisher sends one message whose data is {"ts": <unix nanos now>,
// "pad": …}. publish may be called from several goroutines at once.
type publisher interface {
	publish() error
	// goroutines is how many goroutines keep the window full: the SDK's
	// Trigger waits for the result, a WebSocket write does not.
	goroutines(window int) int
	close()
}

func padding(n int) string { return strings.Repeat("x", n) }

// trinePublisher calls stream::set through an SDK worker.
type trinePublisher struct {
	w      *trine.Worker
	prefix string
	suffix string
	pool   sync.Pool
}

func newTrinePublisher(addr string, pad int) (*trinePublisher, error) {
	w := trine.RegisterWorker(addr, trine.WithName("bench-fanout-publisher"), trine.WithCloseTimeout(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("connect publisher worker: %w", err)
	}
	return &trinePublisher{
		w:      w,
		prefix: `{"stream_name":"bench","group_id":"g","item_id":"x","data":{"ts":`,
		suffix: `,"pad":"` + padding(pad) + `"}}`,
		pool:   sync.Pool{New: func() any { return new([]byte) }},
	}, nil
}

func (p *trinePublisher) publish() error {
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

func (p *trinePublisher) goroutines(window int) int { return window }
func (p *trinePublisher) close()                    { _ = p.w.Close() }

// wsPublisher writes each message to a baseline's /publish WebSocket.
type wsPublisher struct {
	c      *websocket.Conn
	mu     sync.Mutex
	buf    []byte
	suffix string
}

func newWSPublisher(d *dialer, addr string, pad int) (*wsPublisher, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	c, err := d.dial(ctx, 0, "ws://"+addr+"/publish")
	if err != nil {
		return nil, fmt.Errorf("connect publisher: %w", err)
	}
	c.CloseRead(context.Background())
	return &wsPublisher{c: c, suffix: `,"pad":"` + padding(pad) + `"}`}, nil
}

func (p *wsPublisher) publish() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := append(p.buf[:0], `{"ts":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, p.suffix...)
	p.buf = b
	if err := p.c.Write(context.Background(), websocket.MessageText, b); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

func (p *wsPublisher) goroutines(int) int { return 1 }
func (p *wsPublisher) close()             { _ = p.c.CloseNow() }

// runResult is one measured mode of one scenario.
type runResult struct {
	deliveries int64
	elapsed    time.Duration
	p50, p99   time.Duration
	srvCPU     time.Duration
	srvWrites  int64 // write system calls of the server
	cliCPU     time.Duration
	otherCPU   time.Duration // every other process on the machine
}

func (r runResult) perSec() float64 { return float64(r.deliveries) / r.elapsed.Seconds() }

// msgRate is messages per second: deliveries / subscribers.
func (r runResult) msgRate(n int) float64 { return r.perSec() / float64(n) }

// perWrite is deliveries per server write system call: how well the
// server coalesces frames.
func (r runResult) perWrite() float64 {
	if r.srvWrites == 0 {
		return 0
	}
	return float64(r.deliveries) / float64(r.srvWrites)
}

// cpuPerDelivery is the server's CPU time per delivery.
func (r runResult) cpuPerDelivery() time.Duration {
	if r.deliveries == 0 {
		return 0
	}
	return r.srvCPU / time.Duration(r.deliveries)
}

// run publishes for warmup then d, at most window messages in flight
// (published but not yet received by every subscriber): as fast as
// possible when rate is 0, else rate messages per second. It records the
// latencies and the server's CPU time over d, then waits until every
// message published has reached every subscriber.
func run(f *fanout, pub publisher, srv *server, window int, warmup, d time.Duration, rate float64) (runResult, error) {
	var stop atomic.Bool
	errc := make(chan error, window+2)
	var wg sync.WaitGroup
	send := func() bool { // holding a token
		if err := pub.publish(); err != nil {
			errc <- err
			return false
		}
		return true
	}
	n := pub.goroutines(window)
	if rate <= 0 {
		for range n {
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
			interval := time.Duration(float64(time.Second) / rate)
			start := time.Now()
			for k := int64(0); !stop.Load(); {
				due := int64(time.Since(start) / interval)
				for ; k < due && !stop.Load(); k++ {
					if err := f.acquire(stallTimeout); err != nil {
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
	var res runResult
	err := func() error {
		if err := sleepOrFail(warmup, errc, f); err != nil {
			return err
		}
		cpu0, err := cpuTime(srv.pid)
		if err != nil {
			return err
		}
		w0, err := writeCalls(srv.pid)
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
		cpu1, cerr := cpuTime(srv.pid)
		w1, werr := writeCalls(srv.pid)
		if err := errors.Join(err, cerr, werr); err != nil {
			return err
		}
		res.srvCPU, res.srvWrites = cpu1-cpu0, w1-w0
		res.otherCPU = max(0, busy-res.srvCPU-res.cliCPU)
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
