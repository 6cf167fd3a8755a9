package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

const (
	firstTimeout = 30 * time.Second // a subscriber's wait for its first (sync) frame
	ringSize     = 1 << 16          // per-sequence receipt counters; must exceed the window

	// MaxWindow is the largest window Connect accepts.
	MaxWindow = ringSize/2 - 1
)

// Subscribers is a set of subscribers of one group, possibly spread over
// several servers, and the accounting of what they receive: a latency
// histogram, and per-sequence receipt counters that hand a window token
// back once every subscriber (on every server) has a message.
type Subscribers struct {
	n      int
	window int
	count  bool // parse frames and account for them (false: idle sockets)
	proto  *Protocol
	conns  []*websocket.Conn
	ring   []atomic.Int32
	tokens chan struct{} // window tokens; a token is held by each message in flight
	hist   ShardedHistogram

	recording atomic.Bool

	closing  atomic.Bool
	failOnce sync.Once
	failErr  error
	dead     chan struct{} // closed on the first subscriber failure
	wg       sync.WaitGroup
}

// Connect dials n subscribers, at most conc at a time, and waits until
// each has its first (sync) frame. The subscribers are split into
// len(urls) equal blocks, block k dialling urls[k] (see SubscribersPerURL).
// window, from 1 to MaxWindow, is the number of messages Run keeps in
// flight: published, not yet received by every subscriber.
func Connect(d *Dialer, urls []string, n, conc, window int) (*Subscribers, error) {
	return connect(d, urls, n, conc, window, true, nil)
}

// ConnectWith is Connect for a server that speaks proto rather than the
// gateway's stream frames.
func ConnectWith(d *Dialer, urls []string, n, conc, window int, proto *Protocol) (*Subscribers, error) {
	return connect(d, urls, n, conc, window, true, proto)
}

// Protocol is how subscribers of a server other than Trine's gateway
// subscribe and read their messages.
type Protocol struct {
	// Hello is sent once the socket is open (nil: nothing).
	Hello []byte
	// Ready reads the messages that follow until the subscription is
	// established: it reports done, or an error.
	Ready func(msg []byte) (done bool, err error)
	// Each calls fn with the seq and ts of every publication in msg (a
	// message may carry several); a message with none is not an error.
	// It reports false for a message it does not understand.
	Each func(msg []byte, fn func(seq uint64, ts int64)) bool
	// Reply, if set, is what to answer msg with (it carries an
	// application-level ping), or nil; Each then reads msg as well.
	Reply func(msg []byte) []byte
}

// ConnectIdle dials n subscribers to url like Connect, then only reads
// their sockets: the set serves to measure what idle connections cost,
// not to Run.
func ConnectIdle(d *Dialer, url string, n, conc int) (*Subscribers, error) {
	return connect(d, []string{url}, n, conc, 0, false, nil)
}

func connect(d *Dialer, urls []string, n, conc, window int, count bool, proto *Protocol) (*Subscribers, error) {
	f := &Subscribers{n: n, window: window, count: count, proto: proto, conns: make([]*websocket.Conn, n), dead: make(chan struct{})}
	if count {
		f.ring = make([]atomic.Int32, ringSize)
		f.tokens = make(chan struct{}, window)
		for range window {
			f.tokens <- struct{}{}
		}
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
		f.Close()
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

// SubscribersPerURL is how many of n subscribers Connect dials to each of
// k URLs.
func SubscribersPerURL(n, k int) []int {
	counts := make([]int, k)
	for i := range n {
		counts[urlOf(i, n, k)]++
	}
	return counts
}

// open dials subscriber i and reads its first frame, which must be a sync.
func (f *Subscribers) open(d *Dialer, i int, url string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
	defer cancel()
	c, err := d.Dial(ctx, i, url)
	if err != nil {
		return nil, err
	}
	// A context deadline on Reader would stay armed for the payload read;
	// a timer closing the socket bounds the wait just as well.
	t := time.AfterFunc(firstTimeout, func() { _ = c.CloseNow() })
	defer t.Stop()
	if f.proto != nil {
		if err := f.proto.open(c); err != nil {
			_ = c.CloseNow()
			return nil, err
		}
		return c, nil
	}
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

// open subscribes c with p and reads until the subscription is ready.
func (p *Protocol) open(c *websocket.Conn) error {
	ctx := context.Background()
	if p.Hello != nil {
		if err := c.Write(ctx, websocket.MessageText, p.Hello); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
	}
	var b []byte
	for {
		_, r, err := c.Reader(ctx)
		if err == nil {
			b, err = readMsg(r, b)
		}
		if err != nil {
			return fmt.Errorf("subscribing: %w", err)
		}
		done, err := p.Ready(b)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
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
func (f *Subscribers) readLoop(i int, c *websocket.Conn) {
	defer f.wg.Done()
	shard := f.hist.Shard(i)
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
		if !f.count {
			continue
		}
		now := time.Now().UnixNano()
		if p := f.proto; p != nil {
			if p.Reply != nil {
				if r := p.Reply(buf); r != nil {
					if err := c.Write(ctx, websocket.MessageText, r); err != nil {
						f.fail(fmt.Errorf("subscriber %d: reply: %w", i, err))
						return
					}
				}
			}
			if !p.Each(buf, func(seq uint64, ts int64) { f.received(shard, now, seq, ts) }) {
				f.fail(fmt.Errorf("subscriber %d: unexpected message %.200s", i, buf))
				return
			}
			continue
		}
		seq, ts, ok := ParseFrame(buf)
		if !ok {
			f.fail(fmt.Errorf("subscriber %d: unexpected frame %.200s", i, buf))
			return
		}
		f.received(shard, now, seq, ts)
	}
}

// received accounts for message seq, sent at ts, received at now.
func (f *Subscribers) received(shard *Histogram, now int64, seq uint64, ts int64) {
	if f.recording.Load() {
		shard.Record(now - ts)
	}
	slot := &f.ring[seq%ringSize]
	if slot.Add(1) == int32(f.n) {
		slot.Store(0)
		f.tokens <- struct{}{}
	}
}

func (f *Subscribers) fail(err error) {
	if f.closing.Load() {
		return
	}
	f.failOnce.Do(func() {
		f.failErr = err
		close(f.dead)
	})
}

// Err is the first subscriber failure (a socket closed, a frame that is
// not a stream frame), or nil.
func (f *Subscribers) Err() error {
	select {
	case <-f.dead:
		return f.failErr
	default:
		return nil
	}
}

// acquire takes a window token. It fails if a subscriber failed, or if no
// token came back within timeout (a message that never reached everyone).
func (f *Subscribers) acquire(timeout time.Duration) error {
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

// release hands back a window token that was not used.
func (f *Subscribers) release() { f.tokens <- struct{}{} }

// Close closes every socket and waits for the readers.
func (f *Subscribers) Close() {
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

// ParseFrame returns a stream frame's seq and its payload's ts without
// decoding the JSON.
func ParseFrame(b []byte) (seq uint64, ts int64, ok bool) {
	if !bytes.HasPrefix(b, seqPrefix) {
		return 0, 0, false
	}
	seq, n := ParseUint(b[len(seqPrefix):])
	if n == 0 {
		return 0, 0, false
	}
	i := bytes.Index(b, tsKey)
	if i < 0 {
		return 0, 0, false
	}
	v, n := ParseUint(b[i+len(tsKey):])
	if n == 0 {
		return 0, 0, false
	}
	return seq, int64(v), true
}

// ParseUint parses the decimal digits at the start of b: their value, and
// how many there are (0: none).
func ParseUint(b []byte) (v uint64, n int) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}
