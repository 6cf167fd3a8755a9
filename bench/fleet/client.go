package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

const (
	sourceIPs    = 8 // client sockets come from 127.0.0.1 … 127.0.0.8
	dialTimeout  = 30 * time.Second
	firstTimeout = 30 * time.Second
	ringSize     = 1 << 16 // per-sequence receipt counters; must exceed the window
)

// dialer spreads client sockets over several loopback source addresses, one
// http.Transport each, so that 10,000 sockets to one port do not exhaust
// the ephemeral ports of a single source address.
type dialer struct {
	clients []*http.Client
}

func newDialer() *dialer {
	d := &dialer{}
	for i := range sourceIPs {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}, Timeout: dialTimeout}
		d.clients = append(d.clients, &http.Client{Transport: &http.Transport{DialContext: nd.DialContext}})
	}
	return d
}

func (d *dialer) dial(ctx context.Context, i int, url string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      d.clients[i%len(d.clients)],
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// fanout is a set of subscribers of one group, possibly spread over
// several servers, and the accounting of what they receive: a latency
// histogram, and per-sequence receipt counters that hand a window token
// back once every subscriber (on every server) has a message.
//
// Copied from bench/fanout/client.go; the differences: subscribers are
// split over several URLs, and every socket is counted.
type fanout struct {
	n      int
	conns  []*websocket.Conn
	ring   []atomic.Int32
	tokens chan struct{} // window tokens; a token is held by each message in flight
	hist   histogram

	recording atomic.Bool

	closing  atomic.Bool
	failOnce sync.Once
	failErr  error
	dead     chan struct{} // closed on the first subscriber failure
	wg       sync.WaitGroup
}

// connect dials n subscribers, at most conc at a time, and waits until
// each has its first (sync) frame. The subscribers are split into
// len(urls) equal blocks, block k dialling urls[k]. window is the number
// of window tokens.
func connect(d *dialer, urls []string, n, conc, window int) (*fanout, error) {
	f := &fanout{n: n, conns: make([]*websocket.Conn, n), dead: make(chan struct{})}
	f.ring = make([]atomic.Int32, ringSize)
	f.tokens = make(chan struct{}, window)
	for range window {
		f.tokens <- struct{}{}
	}
	var (
		mu       sync.Mutex
		failed   int
		firstErr error
	)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		mu.Lock()
		stop := failed > 0
		mu.Unlock()
		if stop {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := f.open(d, i, urls[urlOf(i, n, len(urls))])
			if err != nil {
				mu.Lock()
				failed++
				if firstErr == nil {
					firstErr = fmt.Errorf("subscriber %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			f.conns[i] = c
		})
	}
	wg.Wait()
	if failed > 0 {
		f.close()
		connected := 0
		for _, c := range f.conns {
			if c != nil {
				connected++
			}
		}
		err := fmt.Errorf("connecting %d subscribers to %s: %d connected, then %d failed; first error: %w", n, strings.Join(urls, ", "), connected, failed, firstErr)
		if errors.Is(firstErr, syscall.EMFILE) || errors.Is(firstErr, syscall.ENFILE) {
			err = fmt.Errorf("%w (out of file descriptors: %s)", err, fdLimit())
		}
		return nil, err
	}
	for i, c := range f.conns {
		f.wg.Add(1)
		go f.readLoop(i, c)
	}
	return f, nil
}

// urlOf is the index of the URL that subscriber i of n dials, with k URLs.
func urlOf(i, n, k int) int { return i * k / n }

// open dials subscriber i and reads its first frame, which must be a sync.
func (f *fanout) open(d *dialer, i int, url string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	c, err := d.dial(ctx, i, url)
	if err != nil {
		return nil, err
	}
	// A context deadline on Reader would stay armed for the payload read;
	// a timer closing the socket bounds the wait just as well.
	t := time.AfterFunc(firstTimeout, func() { _ = c.CloseNow() })
	defer t.Stop()
	_, r, err := c.Reader(context.Background())
	var b []byte
	if err == nil {
		b, err = readMsg(r, nil)
	}
	if err != nil {
		_ = c.CloseNow()
		return nil, fmt.Errorf("first frame: %w", err)
	}
	if !bytes.Contains(b, []byte(`"event":{"type":"sync"`)) {
		_ = c.CloseNow()
		return nil, fmt.Errorf("first frame is not a sync: %.200s", b)
	}
	return c, nil
}

// readMsg reads r to EOF into buf[:0], reusing buf.
func readMsg(r io.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// readLoop reads subscriber i's frames until its socket closes. For each
// message it records the latency (now − the payload's ts) and counts the
// receipt; the last subscriber to receive a message returns its window
// token.
func (f *fanout) readLoop(i int, c *websocket.Conn) {
	defer f.wg.Done()
	shard := &f.hist.shards[i%histShards]
	buf := make([]byte, 0, 512)
	ctx := context.Background() // no deadline: no timer per read
	for {
		_, r, err := c.Reader(ctx)
		if err == nil {
			buf, err = readMsg(r, buf)
		}
		if err != nil {
			f.fail(fmt.Errorf("subscriber %d: %w", i, err))
			return
		}
		now := time.Now().UnixNano()
		seq, ts, ok := parseFrame(buf)
		if !ok {
			f.fail(fmt.Errorf("subscriber %d: unexpected frame %.200s", i, buf))
			return
		}
		if f.recording.Load() {
			shard.record(now - ts)
		}
		slot := &f.ring[seq%ringSize]
		if slot.Add(1) == int32(f.n) {
			slot.Store(0)
			f.tokens <- struct{}{}
		}
	}
}

func (f *fanout) fail(err error) {
	if f.closing.Load() {
		return
	}
	f.failOnce.Do(func() {
		f.failErr = err
		close(f.dead)
	})
}

// acquire takes a window token. It fails if a subscriber failed, or if no
// token came back within timeout (a message that never reached everyone).
func (f *fanout) acquire(timeout time.Duration) error {
	select {
	case <-f.tokens:
		return nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.tokens:
		return nil
	case <-f.dead:
		return f.failErr
	case <-t.C:
		return fmt.Errorf("window stalled: no message completed its delivery to all %d subscribers within %v", f.n, timeout)
	}
}

// close closes every socket and waits for the readers.
func (f *fanout) close() {
	f.closing.Store(true)
	for _, c := range f.conns {
		if c != nil {
			_ = c.CloseNow()
		}
	}
	f.wg.Wait()
}

var (
	seqPrefix = []byte(`{"seq":`)
	tsKey     = []byte(`"ts":`)
)

// parseFrame returns a stream frame's seq and its payload's ts without
// decoding the JSON.
func parseFrame(b []byte) (seq uint64, ts int64, ok bool) {
	if !bytes.HasPrefix(b, seqPrefix) {
		return 0, 0, false
	}
	seq, n := parseUint(b[len(seqPrefix):])
	if n == 0 {
		return 0, 0, false
	}
	i := bytes.Index(b, tsKey)
	if i < 0 {
		return 0, 0, false
	}
	v, n := parseUint(b[i+len(tsKey):])
	if n == 0 {
		return 0, 0, false
	}
	return seq, int64(v), true
}

func parseUint(b []byte) (v uint64, n int) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}

// histogram is a log-linear latency histogram in nanoseconds: exact below
// 64 ns, then 32 buckets per power of two (≤ 3% error). Subscribers add to
// one of several shards with atomics, so that recording never serialises
// them.
const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histLinear  = 2 * histSub
	histBuckets = histLinear + (64-histSubBits-1)*histSub
	histShards  = 16
)

type histShard struct {
	counts [histBuckets]atomic.Int64
	_      [64]byte
}

type histogram struct {
	shards [histShards]histShard
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

func (s *histShard) record(ns int64) { s.counts[bucketOf(ns)].Add(1) }

func (h *histogram) reset() {
	for i := range h.shards {
		for j := range h.shards[i].counts {
			h.shards[i].counts[j].Store(0)
		}
	}
}

// snapshot sums the shards.
func (h *histogram) snapshot() (counts []int64, total int64) {
	counts = make([]int64, histBuckets)
	for i := range h.shards {
		for j := range counts {
			counts[j] += h.shards[i].counts[j].Load()
		}
	}
	for _, c := range counts {
		total += c
	}
	return counts, total
}

// quantile returns the q-quantile of a snapshot.
func quantile(counts []int64, total int64, q float64) time.Duration {
	if total == 0 {
		return 0
	}
	want := int64(q*float64(total)) + 1
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= want {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(len(counts) - 1))
}

// fdLimit describes RLIMIT_NOFILE.
func fdLimit() string {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return "open-files limit unknown"
	}
	return fmt.Sprintf("open-files limit soft %d, hard %d", rl.Cur, rl.Max)
}
