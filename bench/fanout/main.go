// Command fanout measures WebSocket fan-out: N subscribers of one stream
// group, fed by one publisher, against three servers each running as its
// own process so that its CPU time and memory can be read from /proc:
//
//   - trine: the real `trine engine` binary (StreamModule, embedded NATS,
//     gateway), written to with stream::set through an SDK worker;
//   - naive: a github.com/coder/websocket server, one goroutine and one
//     conn.Write per subscriber per message;
//   - coalesce: hand-written frames on the hijacked net.Conn (gobwas/ws
//     handshake), a queue per socket, one conn.Write per writer wake-up;
//   - centrifugo: Centrifugo built from its public source (`make
//     centrifugo`), its JSON protocol over WebSocket, published to through
//     its HTTP API (see centrifugo.go);
//   - old: another trine binary (-old-trine-bin), for an A/B of two
//     versions in one run.
//
// Every message carries its send time; subscribers (coder/websocket
// clients in this process) record the end-to-end latency. At most -window
// messages are in flight (published, not yet received by every
// subscriber). Only ratios within one run mean anything: the load
// generator shares the CPU with the server.
//
//	go run ./bench/fanout [-subscribers 100,1000,10000] [-duration 5s] [-idle 10000]
//	go run ./bench/fanout -servers trine,old,centrifugo -old-trine-bin OLD -subscribers 10000 -rate 4 -rounds 3
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// benchEnv is what every scenario needs.
type benchEnv struct {
	tmp           string
	self          string // this binary, re-executed for the baselines
	trineBin      string
	trineExtra    []string // flags of this engine version (see trineExtraArgs)
	queueMessages int
	dialer        *loadgen.Dialer
	conc          int
	window        int
	payload       int
	cpuprofile    string
	centrifugoBin string
	oldTrineBin   string
	oldExtra      []string
	maxMode       bool
}

// scenario is one server at one N.
type scenario struct {
	max, fixed loadgen.Result
	rate       float64
	err        error
}

func main() {
	subscribers := flag.String("subscribers", "100,1000,10000", "comma-separated subscriber counts")
	duration := flag.Duration("duration", 5*time.Second, "measurement time per mode")
	warmup := flag.Duration("warmup", time.Second, "warm-up time per mode")
	payload := flag.Int("payload", 128, "bytes of padding in each message's data")
	window := flag.Int("window", 32, "messages published but not yet received by every subscriber, at most")
	rate := flag.Float64("rate", 0, "fixed-rate mode, messages/s (0: half of trine's max message rate at each N)")
	idle := flag.Int("idle", 10000, "idle sockets for the memory measurement (0: skip)")
	idleSettle := flag.Duration("idle-settle", 2*time.Second, "settle time before each RSS reading")
	servers := flag.String("servers", "trine,naive,coalesce", "servers to measure: trine, naive, coalesce, centrifugo, old")
	centrifugoBin := flag.String("centrifugo-bin", defaultCentrifugoBin(), "the centrifugo binary (make centrifugo; default $CENTRIFUGO_BIN, else .bin/centrifugo)")
	oldTrineBin := flag.String("old-trine-bin", "", "a trine binary measured as server \"old\", against this tree's build")
	maxMode := flag.Bool("max", true, "measure the max rate before the fixed rate (false needs -rate)")
	rounds := flag.Int("rounds", 1, "repeat every server at every N this many times, the servers' order reversed on every other round (with -rate)")
	conc := flag.Int("connect-concurrency", 200, "subscribers dialled at a time")
	queue := flag.Int("queue", 4096, "outbound messages queued per socket before the server closes it (naive: at most 256)")
	cpuprofile := flag.String("cpuprofile", "", "write each server's CPU profile to FILE.<server>.N<subscribers>, and its publish-to-fan-out times to that .ingest; trine then runs the engine's components in a child of this binary")
	serve := flag.String("serve", "", "internal: run a server (naive, coalesce, or trine with -cpuprofile)")
	addr := flag.String("addr", "127.0.0.1:0", "internal: the baseline server's address")
	flag.Parse()

	if *serve == kindTrine && *cpuprofile != "" {
		os.Exit(serveTrineProfiled(*cpuprofile, *queue))
	}
	if *serve != "" {
		os.Exit(serveBaseline(*serve, *addr, *queue, *cpuprofile))
	}

	var ns []int
	for s := range strings.SplitSeq(*subscribers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("bad -subscribers %q", *subscribers)
		}
		ns = append(ns, n)
	}
	var kinds []string
	for k := range strings.SplitSeq(*servers, ",") {
		k = strings.TrimSpace(k)
		switch k {
		case kindTrine, kindNaive, kindCoalesce, kindCentrifugo, kindOld:
			if !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		default:
			fatalf("bad -servers %q: want trine, naive, coalesce, centrifugo and/or old", *servers)
		}
	}
	// trine first: its max rate sets the fixed rate of the others.
	slices.SortStableFunc(kinds, func(a, b string) int { return boolInt(b == kindTrine) - boolInt(a == kindTrine) })
	if *window < 1 || *window > loadgen.MaxWindow {
		fatalf("-window must be from 1 to %d", loadgen.MaxWindow)
	}
	if err := loadgen.CheckFDs(max(slices.Max(ns), *idle)); err != nil {
		fatalf("%v", err)
	}

	tmp, err := os.MkdirTemp("", "bench-fanout-")
	if err != nil {
		fatalf("%v", err)
	}
	cleanupTmp = func() { _ = os.RemoveAll(tmp) }
	defer cleanupTmp()

	// Stop the servers on ^C or SIGTERM.
	loadgen.ExitOnSignal("fanout", cleanupTmp)
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	if (!*maxMode || *rounds > 1) && *rate <= 0 {
		fatalf("-max=false and -rounds need -rate")
	}
	env := &benchEnv{tmp: tmp, self: self, queueMessages: *queue, dialer: loadgen.NewDialer(), conc: *conc, window: *window, payload: *payload,
		cpuprofile: *cpuprofile, centrifugoBin: *centrifugoBin, oldTrineBin: *oldTrineBin, maxMode: *maxMode}
	if slices.Contains(kinds, kindOld) {
		if *oldTrineBin == "" {
			fatalf("server old needs -old-trine-bin")
		}
		if env.oldExtra, err = trineExtraArgs(*oldTrineBin); err != nil {
			fatalf("%v", err)
		}
	}
	if slices.Contains(kinds, kindTrine) {
		env.trineBin = filepath.Join(tmp, "trine")
		loadgen.Progress("building ./cmd/trine")
		if err := loadgen.BuildTrine(env.trineBin); err != nil {
			fatalf("%v", err)
		}
		if env.trineExtra, err = trineExtraArgs(env.trineBin); err != nil {
			fatalf("%v", err)
		}
	} else if *rate <= 0 {
		fatalf("without trine in -servers, set -rate")
	}

	fmt.Printf("fanout: payload pad %d B, window %d, %v per mode after %v warm-up, GOMAXPROCS %d, %d CPUs\n",
		*payload, *window, *duration, *warmup, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("servers and this load generator share the CPUs: compare within this run only\n")

	for round := range max(*rounds, 1) {
		order := slices.Clone(kinds)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		if *rounds > 1 {
			fmt.Printf("\nround %d of %d: %s\n", round+1, *rounds, strings.Join(order, ", "))
		}
		runRound(env, ns, order, *rate, *warmup, *duration)
	}
	if *idle > 0 {
		printIdle(env, kinds, *idle, *idleSettle)
	}
	loadgen.StopAll()
}

// runRound measures every server, in order, at every N.
func runRound(env *benchEnv, ns []int, kinds []string, rate float64, warmup, duration time.Duration) {
	for _, n := range ns {
		results := map[string]*scenario{}
		fixedRate := rate
		for _, kind := range kinds {
			sc := &scenario{}
			results[kind] = sc
			sc.max, sc.fixed, sc.rate, sc.err = runScenario(env, kind, n, warmup, duration, fixedRate)
			if kind == kindTrine && fixedRate <= 0 {
				fixedRate = sc.rate
			}
			if sc.err != nil {
				loadgen.Progress("%s N=%d: %v", kind, n, sc.err)
			}
		}
		printTable(n, kinds, results, duration)
	}
}

// runScenario measures one server at n subscribers: max rate, then fixed
// rate (rate, or half the max rate measured here when rate is 0).
func runScenario(env *benchEnv, kind string, n int, warmup, d time.Duration, rate float64) (maxRes, fixedRes loadgen.Result, usedRate float64, err error) {
	profile := ""
	if env.cpuprofile != "" {
		profile = fmt.Sprintf("%s.%s.N%d", env.cpuprofile, kind, n)
		defer func() { loadgen.Progress("%s N=%d: %s", kind, n, readIngest(profile+".ingest")) }()
	}
	srv, err := startServer(kind, env, filepath.Join(env.tmp, fmt.Sprintf("data-%s-%d", kind, n)), profile)
	if err != nil {
		return maxRes, fixedRes, 0, err
	}
	defer func() {
		if serr := srv.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if profile != "" {
		loadgen.Progress("%s N=%d: CPU profile to %s", kind, n, profile)
	}
	loadgen.Progress("%s N=%d: server pid %d; connecting %d subscribers", kind, n, srv.PID, n)
	t0 := time.Now()
	var f *loadgen.Subscribers
	if kind == kindCentrifugo {
		f, err = loadgen.ConnectWith(env.dialer, []string{"ws://" + srv.stream + "/connection/websocket"}, n, env.conc, env.window, centrifugoProto)
	} else {
		f, err = loadgen.Connect(env.dialer, []string{"ws://" + srv.stream + "/stream/bench/g"}, n, env.conc, env.window)
	}
	if err != nil {
		return maxRes, fixedRes, 0, err
	}
	defer f.Close()
	loadgen.Progress("%s N=%d: %d subscribers connected in %v", kind, n, n, time.Since(t0).Round(time.Millisecond))
	var pub loadgen.Publisher
	switch kind {
	case kindTrine, kindOld:
		pub, err = loadgen.NewTrinePublisher(srv.grpc, "bench-fanout-publisher", env.payload)
	case kindCentrifugo:
		pub = newCentrifugoPublisher(srv.stream, env.payload, env.window)
	default:
		pub, err = newWSPublisher(env.dialer, srv.stream, env.payload)
	}
	if err != nil {
		return maxRes, fixedRes, 0, err
	}
	defer pub.Close()

	cfg := loadgen.RunConfig{Warmup: warmup, Duration: d, Servers: []*loadgen.Process{srv.Process}}
	if env.maxMode {
		maxRes, err = loadgen.Run(f, pub, cfg)
		if err != nil {
			return maxRes, fixedRes, 0, fmt.Errorf("max rate: %w", err)
		}
		loadgen.Progress("%s N=%d max:   %s", kind, n, describe(maxRes))
	}
	if rate <= 0 {
		rate = maxRes.MsgRate() / 2
	}
	cfg.Rate = rate
	fixedRes, err = loadgen.Run(f, pub, cfg)
	if err != nil {
		return maxRes, fixedRes, rate, fmt.Errorf("fixed rate %.0f/s: %w", rate, err)
	}
	loadgen.Progress("%s N=%d fixed: %s", kind, n, describe(fixedRes))
	return maxRes, fixedRes, rate, nil
}

func describe(r loadgen.Result) string {
	return fmt.Sprintf("%s deliveries/s (%s msg/s), p50 %v p99 %v, server %.2f µs/delivery, %.1f deliveries/write, CPU server %.0f%% bench %.0f%% others %.0f%%",
		loadgen.Human(r.PerSec()), loadgen.Human(r.MsgRate()), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		loadgen.Micros(r.CPUPerDelivery()), r.PerWrite(),
		loadgen.Percent(r.ServerCPU(), r.Elapsed), loadgen.Percent(r.BenchCPU, r.Elapsed), loadgen.Percent(r.OtherCPU, r.Elapsed))
}

func printTable(n int, kinds []string, res map[string]*scenario, d time.Duration) {
	fmt.Printf("\nN=%d subscribers of one group\n", n)
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "\tmax rate\t\t\t\t\t\t\t\t\t|\tfixed rate\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "server\tdeliveries/s\tmsg/s\tp50\tp99\tsrv µs/dlv\tdlv/write\tsrv CPU\tbench CPU\tothers\t|\tmsg/s\tp50\tp99\tsrv µs/dlv\tdlv/write\tsrv CPU\tothers\t")
	for _, k := range kinds {
		s := res[k]
		if s.err != nil && s.max.Deliveries == 0 && s.fixed.Deliveries == 0 {
			fmt.Fprintf(tw, "%s\tfailed\t\t\t\t\t\t\t\t\t|\t\t\t\t\t\t\t\t\n", k)
			continue
		}
		m, f := s.max, s.fixed
		if m.Deliveries == 0 {
			fmt.Fprintf(tw, "%s\t-\t\t\t\t\t\t\t\t\t|\t", k)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%.2f\t%.1f\t%.0f%%\t%.0f%%\t%.0f%%\t|\t", k, loadgen.Human(m.PerSec()), loadgen.Human(m.MsgRate()),
				loadgen.RoundLatency(m.P50), loadgen.RoundLatency(m.P99), loadgen.Micros(m.CPUPerDelivery()), m.PerWrite(),
				loadgen.Percent(m.ServerCPU(), m.Elapsed), loadgen.Percent(m.BenchCPU, m.Elapsed), loadgen.Percent(m.OtherCPU, m.Elapsed))
		}
		if f.Deliveries == 0 {
			fmt.Fprintf(tw, "failed\t\t\t\t\t\t\t\n")
		} else {
			fmt.Fprintf(tw, "%s\t%v\t%v\t%.2f\t%.1f\t%.0f%%\t%.0f%%\t\n", loadgen.Human(f.MsgRate()),
				loadgen.RoundLatency(f.P50), loadgen.RoundLatency(f.P99), loadgen.Micros(f.CPUPerDelivery()), f.PerWrite(),
				loadgen.Percent(f.ServerCPU(), f.Elapsed), loadgen.Percent(f.OtherCPU, f.Elapsed))
		}
	}
	tw.Flush()
	for _, k := range kinds {
		if err := res[k].err; err != nil {
			fmt.Printf("%s failed: %s\n", k, loadgen.OneLine(err))
		}
	}
	if t, ok := res[kindTrine]; ok && t.err == nil {
		fmt.Printf("fixed rate asked: %s msg/s\n", loadgen.Human(t.rate))
		for _, base := range []string{kindOld, kindCentrifugo, kindCoalesce, kindNaive} {
			b, ok := res[base]
			if !ok || b.err != nil {
				continue
			}
			if t.max.Deliveries == 0 || b.max.Deliveries == 0 {
				fmt.Printf("trine/%-10s fixed CPU/delivery %.2f   p50 %.2f  p99 %.2f\n", base,
					loadgen.Ratio(t.fixed.CPUPerDelivery(), b.fixed.CPUPerDelivery()),
					loadgen.Ratio(t.fixed.P50, b.fixed.P50), loadgen.Ratio(t.fixed.P99, b.fixed.P99))
				continue
			}
			fmt.Printf("trine/%-10s deliveries/s %.2f   CPU/delivery %.2f   fixed CPU/delivery %.2f  p50 %.2f  p99 %.2f\n", base,
				t.max.PerSec()/b.max.PerSec(), loadgen.Ratio(t.max.CPUPerDelivery(), b.max.CPUPerDelivery()),
				loadgen.Ratio(t.fixed.CPUPerDelivery(), b.fixed.CPUPerDelivery()),
				loadgen.Ratio(t.fixed.P50, b.fixed.P50), loadgen.Ratio(t.fixed.P99, b.fixed.P99))
		}
		if c, ok := res[kindCoalesce]; ok && c.err == nil && n == 1000 {
			r := t.max.PerSec() / c.max.PerSec()
			fmt.Printf("target: deliveries/s at N=1000 >= 1.0 x coalesce: %.2f %s\n", r, loadgen.Verdict(r >= 1.0))
		}
	}
}

// printIdle measures the RSS of each server before and after idle
// subscribers connect.
func printIdle(env *benchEnv, kinds []string, count int, settle time.Duration) {
	fmt.Printf("\nidle memory: %d subscribed, idle sockets per server; RSS after %v settle, before and after\n", count, settle)
	for _, kind := range kinds {
		before, after, err := idleRSS(env, kind, count, settle)
		if err != nil {
			fmt.Printf("%-9s failed: %s\n", kind, loadgen.OneLine(err))
			continue
		}
		per := float64(after-before) / float64(count)
		line := fmt.Sprintf("%-9s RSS %7.1f MiB -> %7.1f MiB: %5.1f KiB per connection", kind, float64(before)/1024, float64(after)/1024, per)
		if kind == kindTrine {
			line += fmt.Sprintf("   target <= 8 KiB: %s", loadgen.Verdict(per <= 8))
		}
		fmt.Println(line)
	}
}

func idleRSS(env *benchEnv, kind string, count int, settle time.Duration) (before, after int64, err error) {
	// With -cpuprofile, trine runs profiled and writes its heap profile
	// and memory figures with the sockets open (see heapOnSignal).
	profile := ""
	if kind == kindTrine && env.cpuprofile != "" {
		profile = env.cpuprofile + ".idle"
	}
	srv, err := startServer(kind, env, filepath.Join(env.tmp, "data-idle-"+kind), profile)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if serr := srv.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	time.Sleep(settle)
	if before, err = loadgen.RSSKiB(srv.PID); err != nil {
		return 0, 0, err
	}
	loadgen.Progress("%s idle: server pid %d, RSS %d KiB; connecting %d sockets", kind, srv.PID, before, count)
	f, err := loadgen.ConnectIdle(env.dialer, "ws://"+srv.stream+"/stream/bench/g", count, env.conc)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	time.Sleep(settle)
	if after, err = loadgen.RSSKiB(srv.PID); err != nil {
		return 0, 0, err
	}
	if err := f.Err(); err != nil {
		return 0, 0, err
	}
	if profile != "" {
		_ = syscall.Kill(srv.PID, syscall.SIGUSR1)
		loadgen.Progress("%s idle: heap profile in %s.heap, memory figures in %s.mem", kind, profile, profile)
		time.Sleep(settle)
	}
	loadgen.Progress("%s idle: RSS %d KiB with %d sockets", kind, after, count)
	return before, after, nil
}

var cleanupTmp = func() {}

// fatalf stops the servers, removes the temporary directory and exits.
func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fanout: "+format+"\n", args...)
	loadgen.Exit(1, cleanupTmp)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
