package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
)

// The baselines are this binary re-executed with -serve naive|coalesce: a
// WebSocket server with the same routes as the gateway's group socket
// (/stream/bench/g: a sync frame, then every broadcast frame) and a
// /publish WebSocket whose every message becomes the "data" of one
// broadcast frame shaped like the engine's. Each broadcast encodes its
// frame once and hands the same bytes to every subscriber.

// serveBaseline runs a baseline server until SIGTERM, SIGINT or the end of
// its stdin (the bench is gone).
func serveBaseline(kind, addr string, queue int, profile string) int {
	if profile != "" {
		pf, err := os.Create(profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fanout:", err)
			return 1
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintln(os.Stderr, "fanout:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
		stats = new(ingestStats)
		defer stats.writeFile(profile + ".ingest")
	}
	var b broadcaster
	switch kind {
	case kindNaive:
		// A channel's buffer is allocated up front: keep it modest.
		b = &naiveServer{queue: min(queue, naiveMaxQueue)}
	case kindCoalesce:
		b = &coalesceServer{queue: queue}
	default:
		fmt.Fprintf(os.Stderr, "fanout: unknown -serve %q (naive or coalesce)\n", kind)
		return 2
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream/bench/g", b.serveSubscriber)
	mux.HandleFunc("GET /publish", func(w http.ResponseWriter, r *http.Request) { servePublish(w, r, b) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
	_ = srv.Close() // hijacked sockets close with the process
	return 0
}

type broadcaster interface {
	serveSubscriber(w http.ResponseWriter, r *http.Request)
	broadcast(data []byte)
}

// servePublish turns every message of a publisher's WebSocket into a
// broadcast.
func servePublish(w http.ResponseWriter, r *http.Request, b broadcaster) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			return
		}
		ts, ok := dataTS(data)
		ok = ok && stats != nil
		var began int64
		if ok {
			began = stats.begin(ts)
		}
		b.broadcast(data)
		if ok {
			stats.done(began)
		}
	}
}

// stats, with -cpuprofile, times each broadcast.
var stats *ingestStats

// appendFrame appends a stream frame shaped like the engine's (see
// streammodule/wire).
func appendFrame(dst []byte, seq uint64, kind string, data []byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"id":"x","type":"stream","timestamp":`...)
	dst = strconv.AppendInt(dst, time.Now().UnixMilli(), 10)
	dst = append(dst, `,"streamName":"bench","groupId":"g","event":{"type":"`...)
	dst = append(dst, kind...)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	return append(dst, "}}"...)
}

func syncFrame(seq uint64) []byte { return appendFrame(nil, seq, "sync", []byte("[]")) }

// naiveMaxQueue bounds the naive server's per-subscriber channel; the
// bench's window keeps far fewer messages in flight.
const naiveMaxQueue = 256

// naiveServer: one goroutine per subscriber, one conn.Write per message.
type naiveServer struct {
	queue int
	mu    sync.Mutex
	seq   uint64
	subs  []*naiveSub
}

type naiveSub struct {
	c   *websocket.Conn
	ch  chan []byte
	idx int // in subs; -1 once removed
}

func (s *naiveServer) serveSubscriber(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := c.CloseRead(context.Background())
	sub := &naiveSub{c: c, ch: make(chan []byte, s.queue)}
	s.mu.Lock()
	sub.ch <- syncFrame(s.seq)
	sub.idx = len(s.subs)
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	defer s.remove(sub)
	for {
		select {
		case f := <-sub.ch:
			if err := c.Write(ctx, websocket.MessageText, f); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// remove takes sub out of the list; callers must not hold s.mu.
func (s *naiveServer) remove(sub *naiveSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(sub)
}

func (s *naiveServer) removeLocked(sub *naiveSub) {
	if sub.idx < 0 {
		return
	}
	last := s.subs[len(s.subs)-1]
	s.subs[sub.idx], last.idx = last, sub.idx
	s.subs[len(s.subs)-1] = nil
	s.subs = s.subs[:len(s.subs)-1]
	sub.idx = -1
}

func (s *naiveServer) broadcast(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	frame := appendFrame(make([]byte, 0, len(data)+160), s.seq, "update", data)
	for i := 0; i < len(s.subs); i++ {
		sub := s.subs[i]
		select {
		case sub.ch <- frame:
		default: // slow consumer: close it rather than block the others
			s.removeLocked(sub)
			i--
			go sub.c.Close(websocket.StatusPolicyViolation, "slow consumer")
		}
	}
}

// coalesceServer hand-writes frames on the hijacked connection: each
// subscriber has a queue, and one wake-up of its writer drains everything
// queued into one buffer written with one conn.Write.
type coalesceServer struct {
	queue int
	mu    sync.Mutex
	seq   uint64
	subs  []*coalesceSub
}

type coalesceSub struct {
	s    *coalesceServer
	nc   net.Conn
	wake chan struct{} // capacity 1
	done chan struct{} // closed by close

	mu     sync.Mutex
	queue  [][]byte // encoded WebSocket frames
	spare  [][]byte
	closed bool
	idx    int // in s.subs; -1 once removed
}

// wsFrame returns payload as one unmasked, final text frame.
func wsFrame(op byte, payload []byte) []byte {
	n := len(payload)
	b := make([]byte, 0, n+10)
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func (s *coalesceServer) serveSubscriber(w http.ResponseWriter, r *http.Request) {
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: 10 * time.Second}.Upgrade(r, w)
	if err != nil {
		return
	}
	// Keep only what the HTTP server already read, not its buffers.
	var src io.Reader = nc
	if n := rw.Reader.Buffered(); n > 0 {
		pre, _ := rw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc)
	}
	sub := &coalesceSub{s: s, nc: nc, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	sub.enqueue(wsFrame(byte(ws.OpText), syncFrame(s.seq)))
	sub.idx = len(s.subs)
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	go sub.writeLoop()
	go sub.readLoop(bufio.NewReaderSize(src, 512))
}

func (s *coalesceServer) broadcast(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	payload := appendFrame(make([]byte, 0, len(data)+160), s.seq, "update", data)
	frame := wsFrame(byte(ws.OpText), payload)
	for _, sub := range s.subs {
		sub.enqueue(frame)
	}
}

func (s *coalesceServer) remove(sub *coalesceSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.idx < 0 {
		return
	}
	last := s.subs[len(s.subs)-1]
	s.subs[sub.idx], last.idx = last, sub.idx
	s.subs[len(s.subs)-1] = nil
	s.subs = s.subs[:len(s.subs)-1]
	sub.idx = -1
}

func (c *coalesceSub) enqueue(frame []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.s.queue { // slow consumer: close it
		c.mu.Unlock()
		go c.close() // the broadcaster holds s.mu, which close takes
		return
	}
	c.queue = append(c.queue, frame)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *coalesceSub) writeLoop() {
	var buf []byte
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		batch := c.queue
		c.queue, c.spare = c.spare, nil
		c.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		buf = buf[:0]
		for _, f := range batch {
			buf = append(buf, f...)
		}
		clear(batch)
		if _, err := c.nc.Write(buf); err != nil {
			c.close()
			return
		}
		c.mu.Lock()
		if c.spare == nil && cap(batch) <= 1024 {
			c.spare = batch[:0]
		}
		c.mu.Unlock()
		if cap(buf) > 64<<10 {
			buf = nil
		}
	}
}

// readLoop reads (and mostly ignores) client frames: it answers pings and
// ends the connection on a close frame or an error.
func (c *coalesceSub) readLoop(br *bufio.Reader) {
	defer c.close()
	var ctl [125]byte
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 {
				return
			}
			p := ctl[:h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpClose:
				c.enqueue(wsFrame(byte(ws.OpClose), p))
				time.Sleep(10 * time.Millisecond) // let the writer send it
				return
			case ws.OpPing:
				c.enqueue(wsFrame(byte(ws.OpPong), bytes.Clone(p)))
			}
			continue
		}
		if _, err := io.CopyN(io.Discard, br, h.Length); err != nil {
			return
		}
	}
}

func (c *coalesceSub) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.queue = nil
	close(c.done)
	c.mu.Unlock()
	_ = c.nc.Close()
	c.s.remove(c)
}
