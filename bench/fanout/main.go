// Command fanout measures WebSocket fan-out: N subscribers of one stream
// group, fed by one publisher, against three servers each running as its
// own process so that its CPU time and memory can be read from /proc:
//
//   - trine: the real `trine engine` binary (StreamModule, embedded NATS,
//     gateway), written to with stream::set through an SDK worker;
//   - naive: a github.com/coder/websocket server, one goroutine and one
//     conn.Write per subscriber per message;
//   - coalesce: hand-written frames on the hijacked net.Conn (gobwas/ws
//     handshake), a queue per socket, one conn.Write per writer wake-up.
//
// Every message carries its send time; subscribers (coder/websocket
// clients in this process) record the end-to-end latency. At most -window
// messages are in flight (published, not yet received by every
// subscriber). Only ratios within one run mean anything: the load
// generator shares the CPU with the server.
//
//	go run ./bench/fanout [-subscribers 100,1000,10000] [-duration 5s] [-idle 10000]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// benchEnv is what every scenario needs.
type benchEnv struct {
	tmp           string
	self          string // this binary, re-executed for the baselines
	trineBin      string
	trineExtra    []string // flags of this engine version (see trineExtraArgs)
	queueMessages int
	dialer        *dialer
	conc          int
	window        int
	payload       int
	cpuprofile    string
}

// scenario is one server at one N.
type scenario struct {
	max, fixed runResult
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
	servers := flag.String("servers", "trine,naive,coalesce", "servers to measure")
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
		case kindTrine, kindNaive, kindCoalesce:
			if !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		default:
			fatalf("bad -servers %q: want trine, naive and/or coalesce", *servers)
		}
	}
	// trine first: its max rate sets the fixed rate of the others.
	slices.SortStableFunc(kinds, func(a, b string) int { return boolInt(b == kindTrine) - boolInt(a == kindTrine) })
	if *window < 1 || *window >= ringSize/2 {
		fatalf("-window must be from 1 to %d", ringSize/2-1)
	}
	if need := max(slices.Max(ns), *idle) + 64; need > fdSoftLimit() {
		fatalf("%d sockets need about %d file descriptors; %s", max(slices.Max(ns), *idle), need, fdLimit())
	}

	tmp, err := os.MkdirTemp("", "bench-fanout-")
	if err != nil {
		fatalf("%v", err)
	}
	cleanupTmp = func() { _ = os.RemoveAll(tmp) }
	defer cleanupTmp()

	// Stop the servers on ^C or SIGTERM.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigc
		fmt.Fprintf(os.Stderr, "\nfanout: %v: stopping servers\n", s)
		stopAll()
		cleanupTmp()
		os.Exit(130)
	}()
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	env := &benchEnv{tmp: tmp, self: self, queueMessages: *queue, dialer: newDialer(), conc: *conc, window: *window, payload: *payload, cpuprofile: *cpuprofile}
	if slices.Contains(kinds, kindTrine) {
		env.trineBin = filepath.Join(tmp, "trine")
		progress("building ./cmd/trine")
		if err := buildTrine(env.trineBin); err != nil {
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

	for _, n := range ns {
		results := map[string]*scenario{}
		fixedRate := *rate
		for _, kind := range kinds {
			sc := &scenario{}
			results[kind] = sc
			sc.max, sc.fixed, sc.rate, sc.err = runScenario(env, kind, n, *warmup, *duration, fixedRate)
			if kind == kindTrine && fixedRate <= 0 {
				fixedRate = sc.rate
			}
			if sc.err != nil {
				progress("%s N=%d: %v", kind, n, sc.err)
			}
		}
		printTable(n, kinds, results, *duration)
	}
	if *idle > 0 {
		printIdle(env, kinds, *idle, *idleSettle)
	}
	stopAll()
}

// runScenario measures one server at n subscribers: max rate, then fixed
// rate (rate, or half the max rate measured here when rate is 0).
func runScenario(env *benchEnv, kind string, n int, warmup, d time.Duration, rate float64) (maxRes, fixedRes runResult, usedRate float64, err error) {
	profile := ""
	if env.cpuprofile != "" {
		profile = fmt.Sprintf("%s.%s.N%d", env.cpuprofile, kind, n)
		defer func() { progress("%s N=%d: %s", kind, n, readIngest(profile+".ingest")) }()
	}
	srv, err := startServer(kind, env, filepath.Join(env.tmp, fmt.Sprintf("data-%s-%d", kind, n)), profile)
	if err != nil {
		return maxRes, fixedRes, 0, err
	}
	defer func() {
		if serr := srv.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if profile != "" {
		progress("%s N=%d: CPU profile to %s", kind, n, profile)
	}
	progress("%s N=%d: server pid %d; connecting %d subscribers", kind, n, srv.pid, n)
	t0 := time.Now()
	f, err := connect(env.dialer, "ws://"+srv.stream+"/stream/bench/g", n, env.conc, env.window, true)
	if err != nil {
		return maxRes, fixedRes, 0, err
	}
	defer f.close()
	progress("%s N=%d: %d subscribers connected in %v", kind, n, n, time.Since(t0).Round(time.Millisecond))
	var pub publisher
	if kind == kindTrine {
		pub, err = newTrinePublisher(srv.grpc, env.payload)
	} else {
		pub, err = newWSPublisher(env.dialer, srv.stream, env.payload)
	}
	if err != nil {
		return maxRes, fixedRes, 0, err
	}
	defer pub.close()

	maxRes, err = run(f, pub, srv, env.window, warmup, d, 0)
	if err != nil {
		return maxRes, fixedRes, 0, fmt.Errorf("max rate: %w", err)
	}
	progress("%s N=%d max:   %s", kind, n, describe(maxRes, n))
	if rate <= 0 {
		rate = maxRes.msgRate(n) / 2
	}
	fixedRes, err = run(f, pub, srv, env.window, warmup, d, rate)
	if err != nil {
		return maxRes, fixedRes, rate, fmt.Errorf("fixed rate %.0f/s: %w", rate, err)
	}
	progress("%s N=%d fixed: %s", kind, n, describe(fixedRes, n))
	return maxRes, fixedRes, rate, nil
}

func describe(r runResult, n int) string {
	return fmt.Sprintf("%s deliveries/s (%s msg/s), p50 %v p99 %v, server %.2f µs/delivery, %.1f deliveries/write, CPU server %.0f%% bench %.0f%% others %.0f%%",
		human(r.perSec()), human(r.msgRate(n)), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond),
		us(r.cpuPerDelivery()), r.perWrite(), pct(r.srvCPU, r.elapsed), pct(r.cliCPU, r.elapsed), pct(r.otherCPU, r.elapsed))
}

func printTable(n int, kinds []string, res map[string]*scenario, d time.Duration) {
	fmt.Printf("\nN=%d subscribers of one group\n", n)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmax rate\t\t\t\t\t\t\t\t\t|\tfixed rate\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "server\tdeliveries/s\tmsg/s\tp50\tp99\tsrv µs/dlv\tdlv/write\tsrv CPU\tbench CPU\tothers\t|\tmsg/s\tp50\tp99\tsrv µs/dlv\tdlv/write\tsrv CPU\tothers\t")
	for _, k := range kinds {
		s := res[k]
		if s.err != nil && s.max.deliveries == 0 {
			fmt.Fprintf(tw, "%s\tfailed\t\t\t\t\t\t\t\t\t|\t\t\t\t\t\t\t\t\n", k)
			continue
		}
		m, f := s.max, s.fixed
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%.2f\t%.1f\t%.0f%%\t%.0f%%\t%.0f%%\t|\t", k, human(m.perSec()), human(m.msgRate(n)),
			dur(m.p50), dur(m.p99), us(m.cpuPerDelivery()), m.perWrite(), pct(m.srvCPU, m.elapsed), pct(m.cliCPU, m.elapsed), pct(m.otherCPU, m.elapsed))
		if f.deliveries == 0 {
			fmt.Fprintf(tw, "failed\t\t\t\t\t\t\t\n")
		} else {
			fmt.Fprintf(tw, "%s\t%v\t%v\t%.2f\t%.1f\t%.0f%%\t%.0f%%\t\n", human(f.msgRate(n)), dur(f.p50), dur(f.p99),
				us(f.cpuPerDelivery()), f.perWrite(), pct(f.srvCPU, f.elapsed), pct(f.otherCPU, f.elapsed))
		}
	}
	tw.Flush()
	for _, k := range kinds {
		if err := res[k].err; err != nil {
			fmt.Printf("%s failed: %s\n", k, oneLine(err))
		}
	}
	if t, ok := res[kindTrine]; ok && t.err == nil {
		fmt.Printf("fixed rate asked: %s msg/s (half of trine's max)\n", human(t.rate))
		for _, base := range []string{kindCoalesce, kindNaive} {
			b, ok := res[base]
			if !ok || b.err != nil {
				continue
			}
			fmt.Printf("trine/%-8s deliveries/s %.2f   CPU/delivery %.2f   fixed p50 %.2f  p99 %.2f\n", base,
				t.max.perSec()/b.max.perSec(), ratio(t.max.cpuPerDelivery(), b.max.cpuPerDelivery()),
				ratio(t.fixed.p50, b.fixed.p50), ratio(t.fixed.p99, b.fixed.p99))
		}
		if c, ok := res[kindCoalesce]; ok && c.err == nil && n == 1000 {
			r := t.max.perSec() / c.max.perSec()
			fmt.Printf("target: deliveries/s at N=1000 >= 1.0 x coalesce: %.2f %s\n", r, verdict(r >= 1.0))
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
			fmt.Printf("%-9s failed: %s\n", kind, oneLine(err))
			continue
		}
		per := float64(after-before) / float64(count)
		line := fmt.Sprintf("%-9s RSS %7.1f MiB -> %7.1f MiB: %5.1f KiB per connection", kind, float64(before)/1024, float64(after)/1024, per)
		if kind == kindTrine {
			line += fmt.Sprintf("   target <= 16 KiB: %s", verdict(per <= 16))
		}
		fmt.Println(line)
	}
}

func idleRSS(env *benchEnv, kind string, count int, settle time.Duration) (before, after int64, err error) {
	srv, err := startServer(kind, env, filepath.Join(env.tmp, "data-idle-"+kind), "")
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if serr := srv.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	time.Sleep(settle)
	if before, err = rssKiB(srv.pid); err != nil {
		return 0, 0, err
	}
	progress("%s idle: server pid %d, RSS %d KiB; connecting %d sockets", kind, srv.pid, before, count)
	f, err := connect(env.dialer, "ws://"+srv.stream+"/stream/bench/g", count, env.conc, env.window, false)
	if err != nil {
		return 0, 0, err
	}
	defer f.close()
	time.Sleep(settle)
	if after, err = rssKiB(srv.pid); err != nil {
		return 0, 0, err
	}
	select {
	case <-f.dead:
		return 0, 0, f.failErr
	default:
	}
	progress("%s idle: RSS %d KiB with %d sockets", kind, after, count)
	return before, after, nil
}

// buildTrine builds ./cmd/trine of this module into out.
func buildTrine(out string) error {
	cmd := exec.Command("go", "env", "GOMOD")
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(b)))
	cmd = exec.Command("go", "build", "-o", out, "./cmd/trine")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/trine: %v\n%s", err, b)
	}
	return nil
}

func fdSoftLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1 << 30
	}
	return int(rl.Cur)
}

var cleanupTmp = func() {}

// fatalf stops the servers, removes the temporary directory and exits.
func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fanout: "+format+"\n", args...)
	stopAll()
	cleanupTmp()
	os.Exit(1)
}

var startTime = time.Now()

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# %6.1fs "+format+"\n", append([]any{time.Since(startTime).Seconds()}, args...)...)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func pct(cpu, wall time.Duration) float64 {
	if wall == 0 {
		return 0
	}
	return 100 * float64(cpu) / float64(wall)
}

// dur rounds a latency for the table.
func dur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// human formats a rate: 1234567 -> 1.23M.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
