// Command storm measures the server side of a reconnect storm: N browser
// sockets, already connected to a gateway, join one group at the same
// instant, as clients do when they all rejoin after a gateway restart or a
// network blip. It reports how many snapshot reads the gateway asked its
// backend for per storm, and the time from the storm to the last socket
// holding the group's snapshot.
//
// Engine (StreamModule, memory store), embedded NATS and gateway run in
// this process; the sockets are coder/websocket clients over loopback. By
// default the gateway reads snapshots as `trine gateway` does, through the
// engine's engine::streams::snapshot function (-backend remote); -backend
// module reads the module directly, as the engine's own gateway does. A
// writer may change the group during the storms (-rate).
//
// With -connect-rate R the sockets are not dialled beforehand but in a
// connect storm: socket i starts its dial i/R after the first, and its
// connect time runs from that moment (so a generator falling behind counts
// against the server) to its first sync frame, through TCP connect,
// WebSocket upgrade and join. The snapshot reads of the storm show whether
// the gateway's single flight holds under it.
//
//	go run ./bench/storm [-clients 1000] [-rounds 5] [-items 1000] [-item-bytes 100] [-rate 0] [-connect-rate 0]
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/streamapi"
	"github.com/trinehq/trine/streammodule/wire"
)

func main() {
	clients := flag.Int("clients", 1000, "sockets that join the group at once")
	rounds := flag.Int("rounds", 5, "storms (each socket leaves and joins again)")
	items := flag.Int("items", 1000, "items in the group")
	itemBytes := flag.Int("item-bytes", 100, "bytes of each item's value")
	rate := flag.Float64("rate", 0, "writes/s to the group during the storms (0: none)")
	coalesce := flag.Duration("coalesce", 0, "the gateway's SnapshotCoalesce (0: its default; negative: none)")
	backend := flag.String("backend", "remote", "how the gateway reads snapshots: remote (through the engine's functions, as trine gateway) or module")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the storms to FILE")
	connectRate := flag.Float64("connect-rate", 0, "dial the sockets in a connect storm at this many connects/s, each joining the group (0: dial them beforehand)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "storm:", err)
			os.Exit(1)
		}
		profile = f
	}
	if err := loadgen.CheckFDs(2 * *clients); err != nil { // both ends are in this process
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
	if err := run(*clients, *rounds, *items, *itemBytes, *rate, *connectRate, *backend, *coalesce); err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

// profile, if set, receives a CPU profile of the storms.
var profile *os.File

// counting is a Backend that counts snapshot reads.
type counting struct {
	gateway.Backend
	snapshots atomic.Int64
}

func (c *counting) Snapshot(ctx context.Context, q streamapi.SnapshotRequest) (streamapi.SnapshotResult, error) {
	c.snapshots.Add(1)
	return c.Backend.Snapshot(ctx, q)
}

// storm is one round's figures.
type storm struct {
	reads   int64
	synced  time.Duration // storm start to the last socket's snapshot
	p50     time.Duration // to the median socket's snapshot
	maxSeq  uint64
	minSeq  uint64
	writes  int64
	elapsed time.Duration
}

func run(n, rounds, items, itemBytes int, rate, connectRate float64, backend string, coalesce time.Duration) error {
	st, err := loadgen.StartStack("storm", "")
	if err != nil {
		return err
	}
	defer st.Close()
	subConn, e, m := st.Events, st.Engine, st.Module
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var inner gateway.Backend = m
	switch backend {
	case "module":
	case "remote":
		inner = gateway.RemoteBackend(e)
	default:
		return fmt.Errorf("-backend %q: want remote or module", backend)
	}
	cb := &counting{Backend: inner}
	gw, err := gateway.New(gateway.Config{Backend: cb, Events: natsfanout.NewSubscriber(subConn),
		QueueMessages: 1 << 16, QueueBytes: 1 << 30, SnapshotCoalesce: coalesce})
	if err != nil {
		return err
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	defer gw.Close()

	set := func(id string, v any) error {
		p, _ := json.Marshal(map[string]any{"stream_name": "storm", "group_id": "g", "item_id": id, "data": v})
		_, err := e.Trigger(ctx, engine.Call{FunctionID: "stream::set", Payload: p})
		return err
	}
	pad := strings.Repeat("x", max(itemBytes-10, 0))
	for i := range items {
		if err := set(fmt.Sprintf("item-%05d", i), fmt.Sprintf("%d:%s", i, pad)); err != nil {
			return err
		}
	}

	if profile != nil {
		if err := pprof.StartCPUProfile(profile); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
	d := loadgen.NewDialer()
	var socks []*sock
	var cs *connects
	if connectRate > 0 {
		loadgen.Progress("connect storm: %d sockets at %.0f/s", n, connectRate)
		cs, err = connectStorm(ctx, d, url, n, connectRate, cb)
		socks = cs.socks
	} else {
		loadgen.Progress("dialling %d sockets", n)
		socks, err = dialAll(ctx, d, url, n)
	}
	if err != nil {
		return err
	}
	defer closeAll(socks)

	// The writer, during the storms.
	var writes atomic.Int64
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if rate <= 0 {
			return
		}
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			case <-t.C:
			}
			if set(fmt.Sprintf("item-%05d", i%items), fmt.Sprintf("w%d:%s", i, pad)) == nil {
				writes.Add(1)
			}
		}
	}()

	if cs != nil {
		cs.print(n, connectRate, items, itemBytes, coalesce)
	}
	var res []storm
	for r := range rounds {
		sub := "r" + strconv.Itoa(r)
		for _, s := range socks {
			s.expect(sub)
		}
		before := cb.snapshots.Load()
		w0 := writes.Load()
		start := time.Now()
		var sends sync.WaitGroup
		for _, s := range socks {
			sends.Go(func() { s.send(ctx, joinFrame(sub)) })
		}
		sends.Wait()
		times := make([]time.Duration, 0, n)
		var minSeq, maxSeq uint64
		for i, s := range socks {
			select {
			case at := <-s.synced:
				times = append(times, at.t.Sub(start))
				if i == 0 || at.seq < minSeq {
					minSeq = at.seq
				}
				maxSeq = max(maxSeq, at.seq)
			case <-time.After(60 * time.Second):
				return fmt.Errorf("round %d: socket %d has no snapshot after 60s", r, i)
			case <-s.done:
				return fmt.Errorf("round %d: socket %d closed: %v", r, i, s.err)
			}
		}
		slices.Sort(times)
		st := storm{reads: cb.snapshots.Load() - before, synced: times[len(times)-1], p50: times[len(times)/2],
			minSeq: minSeq, maxSeq: maxSeq, writes: writes.Load() - w0, elapsed: time.Since(start)}
		res = append(res, st)
		loadgen.Progress("storm %d: %d snapshot reads, all synced in %v", r+1, st.reads, st.synced.Round(time.Millisecond))
		for _, s := range socks {
			s.send(ctx, leaveFrame(sub))
		}
	}
	close(stopWriter)
	<-writerDone

	if rounds == 0 {
		return nil
	}
	fmt.Printf("reconnect storm: %d sockets join group storm/g (%d items of %d bytes), backend %s, writes %.0f/s, coalesce %v\n\n",
		n, items, itemBytes, backend, rate, cmp.Or(coalesce, gateway.DefaultSnapshotCoalesce))
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "storm\tsnapshot reads\tall synced\tp50 synced\tsync seqs\twrites meanwhile\t")
	for i, st := range res {
		fmt.Fprintf(tw, "%d\t%d\t%v\t%v\t%d..%d\t%d\t\n", i+1, st.reads, st.synced.Round(100*time.Microsecond),
			st.p50.Round(100*time.Microsecond), st.minSeq, st.maxSeq, st.writes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println()
	return nil
}

func joinFrame(sub string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": sub, "streamName": "storm", "groupId": "g"}})
	return b
}

func leaveFrame(sub string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "leave", "data": map[string]any{"subscriptionId": sub, "streamName": "storm", "groupId": "g"}})
	return b
}

// sock is one browser socket: a goroutine reads every frame and reports
// the first snapshot of the expected subscription.
type sock struct {
	c      *websocket.Conn
	mu     sync.Mutex
	want   []byte // the end of the sync frame awaited
	synced chan syncAt
	done   chan struct{}
	err    error
	wmu    sync.Mutex
}

type syncAt struct {
	t   time.Time
	seq uint64
}

func newSock(c *websocket.Conn) *sock {
	s := &sock{c: c, synced: make(chan syncAt, 1), done: make(chan struct{})}
	go s.read()
	return s
}

func (s *sock) expect(sub string) {
	s.mu.Lock()
	s.want = []byte(`"subscriptionId":"` + sub + `"}`)
	s.mu.Unlock()
}

func (s *sock) send(ctx context.Context, b []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.c.Write(ctx, websocket.MessageText, b)
}

var syncMark = []byte(`"event":{"type":"sync"`)

func (s *sock) read() {
	defer close(s.done)
	for {
		_, b, err := s.c.Read(context.Background())
		if err != nil {
			s.err = err
			return
		}
		now := time.Now()
		s.mu.Lock()
		want := s.want
		s.mu.Unlock()
		if want == nil || !bytes.HasSuffix(b, want) || !bytes.Contains(b, syncMark) {
			continue
		}
		seq, _, _ := wire.Header(b)
		s.mu.Lock()
		s.want = nil
		s.mu.Unlock()
		s.synced <- syncAt{t: now, seq: seq}
	}
}

// dialAll dials n sockets, 100 at a time.
func dialAll(ctx context.Context, d *loadgen.Dialer, url string, n int) ([]*sock, error) {
	socks := make([]*sock, n)
	var dialErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for i := range socks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, dcancel := context.WithTimeout(ctx, loadgen.DialTimeout)
			defer dcancel()
			c, err := d.Dial(dctx, i, url)
			if err != nil {
				dialErr.Store(err)
				return
			}
			c.SetReadLimit(64 << 20)
			socks[i] = newSock(c)
		}()
	}
	wg.Wait()
	if err, _ := dialErr.Load().(error); err != nil {
		closeAll(socks)
		return nil, fmt.Errorf("dial: %w", err)
	}
	return socks, nil
}

// closeAll closes the sockets dialled.
func closeAll(socks []*sock) {
	for _, s := range socks {
		if s != nil {
			s.c.CloseNow()
			<-s.done
		}
	}
}

// connects is a connect storm's figures.
type connects struct {
	socks   []*sock
	times   []time.Duration // each socket's connect time, sorted
	spread  time.Duration   // first dial to last dial started
	elapsed time.Duration   // first dial to last sync
	reads   int64           // snapshot reads during the storm
	cpu     time.Duration   // this process's CPU time (server and clients)
	load    string          // /proc/loadavg after the storm
}

// connectStorm dials n sockets at rate/s, each joining the group once
// connected, and times each from its scheduled dial to its sync frame.
func connectStorm(ctx context.Context, d *loadgen.Dialer, url string, n int, rate float64, cb *counting) (*connects, error) {
	cs := &connects{socks: make([]*sock, n), times: make([]time.Duration, n)}
	errs := make([]error, n)
	before, cpu0 := cb.snapshots.Load(), loadgen.SelfCPU()
	join := joinFrame("c")
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(due); wait > time.Millisecond {
			time.Sleep(wait)
		}
		wg.Go(func() {
			dctx, dcancel := context.WithTimeout(ctx, loadgen.DialTimeout)
			defer dcancel()
			c, err := d.Dial(dctx, i, url)
			if err != nil {
				errs[i] = err
				return
			}
			c.SetReadLimit(64 << 20)
			s := newSock(c)
			cs.socks[i] = s
			s.expect("c")
			s.send(dctx, join)
			select {
			case at := <-s.synced:
				cs.times[i] = at.t.Sub(due)
			case <-s.done:
				errs[i] = fmt.Errorf("closed before its sync frame: %v", s.err)
			case <-dctx.Done():
				errs[i] = fmt.Errorf("no sync frame within %v", loadgen.DialTimeout)
			}
		})
	}
	cs.spread = time.Since(start)
	wg.Wait()
	cs.elapsed = time.Since(start)
	cs.reads = cb.snapshots.Load() - before
	cs.cpu = loadgen.SelfCPU() - cpu0
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		cs.load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	for i, err := range errs {
		if err != nil {
			closeAll(cs.socks)
			return nil, fmt.Errorf("connect storm: socket %d: %w", i, err)
		}
	}
	slices.Sort(cs.times)
	return cs, nil
}

func (cs *connects) print(n int, rate float64, items, itemBytes int, coalesce time.Duration) {
	q := func(f float64) time.Duration {
		return cs.times[min(len(cs.times)-1, int(f*float64(len(cs.times))))].Round(100 * time.Microsecond)
	}
	fmt.Printf("connect storm: %d sockets at %.0f connects/s asked (%.0f/s dialled), each TCP connect + upgrade + join of storm/g (%d items of %d bytes) to its sync frame; coalesce %v; load average %s\n\n",
		n, rate, float64(n)/cs.spread.Seconds(), items, itemBytes, cmp.Or(coalesce, gateway.DefaultSnapshotCoalesce), cs.load)
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "connect p50\tp99\tmax\tall synced\tsnapshot reads\tCPU µs/connect (both ends)\t")
	fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%d\t%.0f\t\n", q(0.5), q(0.99), cs.times[len(cs.times)-1].Round(100*time.Microsecond),
		cs.elapsed.Round(time.Millisecond), cs.reads, loadgen.Micros(cs.cpu)/float64(n))
	_ = tw.Flush()
	fmt.Println()
}
