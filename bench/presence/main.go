// Command presence measures what a presence storm costs the other traffic
// of a gateway: the end-to-end latency of ordinary stream events (a writer
// setting an item, subscribers of its group receiving the change) in a
// quiet run, then in a run during which N sockets join one group with
// presence and leave it again, round after round. The verdict is the
// storm's p99 against twice the quiet p99.
//
// Engine (StreamModule, memory store), embedded NATS with JetStream (the
// presence bucket) and the gateway run in this process; the sockets are
// coder/websocket clients over loopback, connected before the runs so that
// the storm is presence alone. The grace is 0 by default, so that every
// join and leave is a real join and leave event to every member (a grace
// turns a rejoin into nothing at all).
//
//	go run ./bench/presence [-clients 1000] [-subscribers 100] [-rate 200] [-duration 5s] [-runs 3] [-spread 1s] [-presence=true] [-grace 0] [-presence-rate BYTES]
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
)

func main() {
	clients := flag.Int("clients", 1000, "sockets that join the presence group and leave it, round after round")
	subscribers := flag.Int("subscribers", 100, "subscribers of the ordinary group")
	rate := flag.Float64("rate", 200, "writes/s to the ordinary group")
	duration := flag.Duration("duration", 5*time.Second, "length of each run")
	grace := flag.Duration("grace", 0, "the gateway's presence grace (0: none, every leave is one)")
	spread := flag.Duration("spread", time.Second, "the joins of a round (and then its leaves) are spread over this time, as clients reconnecting with jittered backoff arrive; 0: all at once")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the storm runs to FILE")
	withPresence := flag.Bool("presence", true, "storm sockets join with presence (false: plain joins, to tell the cost of presence from that of joins)")
	pairs := flag.Int("runs", 3, "quiet and storm runs, alternating")
	rateBytes := flag.Int("presence-rate", 0, "the gateway's PresenceRateBytes (0: its default)")
	flag.Parse()
	if err := run(*clients, *subscribers, *rate, *duration, *grace, *rateBytes, *pairs, *withPresence, *spread, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(1)
	}
}

// figures are one run's.
type figures struct {
	events        int64
	length        time.Duration
	p50, p99, max time.Duration
	rounds        int
	joins, frames int64
	slowClose     int64
}

func run(n, subs int, rate float64, d, grace time.Duration, rateBytes, pairs int, withPresence bool, spread time.Duration, cpuprofile string) error {
	dir, err := os.MkdirTemp("", "trine-bench-presence")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := loadgen.StartStack("presence", dir)
	if err != nil {
		return err
	}
	defer st.Close()
	ns, subConn, e, m := st.NATS, st.Events, st.Engine, st.Module
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	pres := natsfanout.NewPresence(ns.Conn, natsfanout.PresenceConfig{})
	octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
	err = pres.Open(octx)
	ocancel()
	if err != nil {
		return err
	}
	if grace == 0 {
		grace = -1
	}
	gw, err := gateway.New(gateway.Config{Backend: m, Events: natsfanout.NewSubscriber(subConn), Presence: pres,
		PresenceGrace: grace, PresenceMaxMembers: n + subs, PresenceRateBytes: rateBytes})
	if err != nil {
		return err
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	defer gw.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"

	loadgen.Progress("dialling %d subscribers and %d presence sockets", subs, n)
	dialer := loadgen.NewDialer()
	var hist loadgen.ShardedHistogram
	var record atomic.Bool
	var events atomic.Int64
	readers, err := dialAll(ctx, dialer, url, subs, 0, func(i int, b []byte) {
		if t, ok := sentAt(b); ok && record.Load() {
			hist.Shard(i).Record(time.Now().UnixNano() - t)
			events.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer closeAll(readers)
	for i, r := range readers {
		r.send(ctx, joinFrame("t", "ticks", "g", nil))
		_ = i
	}
	var frames atomic.Int64
	joined := make(chan struct{}, n)
	stormers, err := dialAll(ctx, dialer, url, n, subs, func(_ int, b []byte) {
		switch {
		case bytes.Contains(b, []byte(`"type":"presence"`)):
			frames.Add(1)
			if withPresence && bytes.Contains(b, []byte(`"type":"sync"`)) {
				joined <- struct{}{}
			}
		case !withPresence && bytes.Contains(b, []byte(`"event":{"type":"sync"`)):
			joined <- struct{}{}
		}
	})
	if err != nil {
		return err
	}
	defer closeAll(stormers)

	// The writer: one item, its value the time it was set.
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		for {
			select {
			case <-stopWriter:
				return
			case <-t.C:
			}
			p := []byte(`{"stream_name":"ticks","group_id":"g","item_id":"now","data":{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}}`)
			_, _ = e.Trigger(ctx, engine.Call{FunctionID: "stream::set", Payload: p})
		}
	}()
	defer func() { close(stopWriter); <-writerDone }()
	loadgen.Progress("warming up")
	time.Sleep(time.Second)

	measure := func(storm bool) (figures, error) {
		hist.Reset()
		events.Store(0)
		frames.Store(0)
		slow0 := gw.Stats().SlowConsumerCloses
		record.Store(true)
		start := time.Now()
		var f figures
		for time.Since(start) < d {
			if !storm {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			sub := "p" + strconv.Itoa(f.rounds)
			var meta any
			if withPresence {
				meta = map[string]any{"meta": map[string]any{"round": f.rounds, "name": "someone"}}
			}
			spreadOut(stormers, spread, func(s *sock) { s.send(ctx, joinFrame(sub, "rooms", "lobby", meta)) })
			for range stormers {
				select {
				case <-joined:
				case <-time.After(60 * time.Second):
					return f, fmt.Errorf("round %d: not every socket got its presence sync within 60s", f.rounds)
				}
			}
			f.joins += int64(len(stormers))
			spreadOut(stormers, spread, func(s *sock) { s.send(ctx, leaveFrame(sub, "rooms", "lobby")) })
			f.rounds++
		}
		record.Store(false)
		f.length = time.Since(start)
		snap := hist.Snapshot()
		f.events, f.frames = events.Load(), frames.Load()
		f.p50, f.p99, f.max = snap.Quantile(0.50), snap.Quantile(0.99), snap.Max()
		f.slowClose = gw.Stats().SlowConsumerCloses - slow0
		return f, nil
	}
	// Quiet and storm runs alternate, so that the machine's own noise
	// falls on both; the verdict compares all quiet samples with all storm
	// samples.
	var quiet, storm []figures
	var quietHist, stormHist loadgen.Snapshot
	for i := range pairs {
		loadgen.Progress("quiet run %d, %v", i+1, d)
		q, err := measure(false)
		if err != nil {
			return err
		}
		quiet = append(quiet, q)
		quietHist = quietHist.Add(hist.Snapshot())
		loadgen.Progress("storm run %d, at least %v", i+1, d)
		stop := func() {}
		if cpuprofile != "" && i == 0 {
			if stop, err = loadgen.StartProfile(cpuprofile); err != nil {
				return err
			}
		}
		st, err := measure(true)
		stop()
		if err != nil {
			return err
		}
		storm = append(storm, st)
		stormHist = stormHist.Add(hist.Snapshot())
		loadgen.Progress("settling")
		time.Sleep(2 * time.Second)
	}

	what := "with presence (meta)"
	if !withPresence {
		what = "without presence (the cost of the joins alone)"
	}
	fmt.Printf("presence storm: %d sockets join group rooms/lobby %s over %v and leave it over %v, round after round (grace %v, presence budget %sB/s);\n",
		n, what, spread, spread, max(grace, 0), loadgen.Human(float64(cmp.Or(rateBytes, gateway.DefaultPresenceRateBytes))))
	fmt.Printf("meanwhile %d subscribers of ticks/g get %.0f writes/s\n\n", subs, rate)
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "run\tlength\tordinary events\tp50\tp99\tmax\tstorm rounds\tpresence joins\tpresence frames\tslow closes\t")
	for i := range quiet {
		for _, r := range []struct {
			name string
			f    figures
		}{{"quiet", quiet[i]}, {"storm", storm[i]}} {
			fmt.Fprintf(tw, "%s %d\t%v\t%d\t%v\t%v\t%v\t%d\t%d\t%d\t%d\t\n", r.name, i+1, r.f.length.Round(100*time.Millisecond), r.f.events,
				loadgen.RoundLatency(r.f.p50), loadgen.RoundLatency(r.f.p99), loadgen.RoundLatency(r.f.max), r.f.rounds, r.f.joins, r.f.frames, r.f.slowClose)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	qp99, sp99 := quietHist.Quantile(0.99), stormHist.Quantile(0.99)
	ok := sp99 <= 2*qp99
	fmt.Printf("\nall runs: quiet p99 %v, storm p99 %v; storm / quiet = %.2f (bound 2.00): %s\n",
		loadgen.RoundLatency(qp99), loadgen.RoundLatency(sp99), loadgen.Ratio(sp99, qp99), loadgen.Verdict(ok))
	if !ok {
		return fmt.Errorf("the storm's p99 %v is over twice the quiet p99 %v", sp99, qp99)
	}
	return nil
}

// spreadOut calls send for every socket, spread evenly over d (0: all
// at once), as clients that reconnect with jittered backoff do.
func spreadOut(socks []*sock, d time.Duration, send func(*sock)) {
	var wg sync.WaitGroup
	start := time.Now()
	for i, s := range socks {
		if d > 0 {
			time.Sleep(time.Until(start.Add(d * time.Duration(i) / time.Duration(len(socks)))))
		}
		wg.Go(func() { send(s) })
	}
	wg.Wait()
}

// sentAt reads the writer's time out of a frame of ticks/g.
func sentAt(b []byte) (int64, bool) {
	i := bytes.Index(b, []byte(`"data":{"t":`))
	if i < 0 {
		return 0, false
	}
	v, n := loadgen.ParseUint(b[i+len(`"data":{"t":`):])
	return int64(v), n > 0
}

func joinFrame(sub, stream, group string, presence any) []byte {
	d := map[string]any{"subscriptionId": sub, "streamName": stream, "groupId": group}
	if presence != nil {
		d["presence"] = presence
	}
	b, _ := json.Marshal(map[string]any{"type": "join", "data": d})
	return b
}

func leaveFrame(sub, stream, group string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "leave", "data": map[string]any{"subscriptionId": sub, "streamName": stream, "groupId": group}})
	return b
}

// sock is one socket whose frames a goroutine hands to on.
type sock struct {
	c    *websocket.Conn
	done chan struct{}
	wmu  sync.Mutex
}

func (s *sock) send(ctx context.Context, b []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.c.Write(ctx, websocket.MessageText, b)
}

func dialAll(ctx context.Context, d *loadgen.Dialer, url string, n, first int, on func(i int, b []byte)) ([]*sock, error) {
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
			dctx, cancel := context.WithTimeout(ctx, loadgen.DialTimeout)
			defer cancel()
			c, err := d.Dial(dctx, first+i, url)
			if err != nil {
				dialErr.Store(err)
				return
			}
			c.SetReadLimit(64 << 20)
			s := &sock{c: c, done: make(chan struct{})}
			go func() {
				defer close(s.done)
				for {
					_, b, err := c.Read(context.Background())
					if err != nil {
						return
					}
					on(i, b)
				}
			}()
			socks[i] = s
		}()
	}
	wg.Wait()
	if err, _ := dialErr.Load().(error); err != nil {
		closeAll(socks)
		return nil, fmt.Errorf("dial: %w", err)
	}
	return socks, nil
}

func closeAll(socks []*sock) {
	for _, s := range socks {
		if s != nil {
			s.c.CloseNow()
			<-s.done
		}
	}
}
