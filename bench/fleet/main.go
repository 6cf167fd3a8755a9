// Command fleet measures what splitting browser fan-out over separate
// `trine gateway` processes costs, against one `trine engine` serving
// every browser itself:
//
//   - single: one `trine engine --store memory`; every subscriber on its
//     own stream listener;
//   - fleet: the same engine plus -gateways `trine gateway` processes that
//     take events from the engine's embedded NATS server (over TCP) and
//     snapshots from its gRPC listener; the subscribers are split evenly
//     over the gateways, none on the engine's own listener.
//
// In both, an SDK worker publishes with stream::set through the engine's
// gRPC listener as fast as a window of -window messages in flight allows
// (bench/fanout's max-rate mode); each message carries its send time and
// every subscriber (a coder/websocket client in this process) records the
// end-to-end latency. The figure of merit is deliveries per second per
// core the server processes used (CPU time from /proc/<pid>/stat): the
// load generator shares the machine's CPUs with the servers, so only
// ratios within one run mean anything.
//
// Then, in the same run, stream::set throughput through the SDK with
// -set-callers concurrent callers, for `trine engine --store memory` and
// for `--store jetstream` on a 1-node and a 3-node NATS cluster (child
// processes of this program, see natsnode.go), every caller writing to
// one group and the callers spread over -set-groups groups (setbench.go).
//
// Last, the cost of one write to the JetStream store in a group of
// -group-items items against an empty group (groupsize.go).
//
// With -set-ab OLD,NEW it only compares two prebuilt binaries' memory-store
// stream::set writes/s, alternately in one run (setab.go).
//
//	go run ./bench/fleet [-subscribers 10000] [-duration 5s] [-gateways 2] [-set-callers 32] [-set-only]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// target: fleet per-core throughput ≥ targetRatio × single.
const targetRatio = 0.9

// benchEnv is what every mode needs.
type benchEnv struct {
	tmp           string
	trineBin      string
	queueMessages int
	gatewayProcs  int // GOMAXPROCS of each gateway; 0: the Go default
	dialer        *loadgen.Dialer
	conc          int
	window        int
	payload       int
	warmup        time.Duration
	duration      time.Duration
}

func main() {
	if os.Getenv(natsNodeEnv) != "" {
		natsNodeMain()
		return
	}
	subscribers := flag.Int("subscribers", 10000, "subscribers of the one group, split evenly over the gateways in the fleet")
	gateways := flag.Int("gateways", 2, "trine gateway processes in the fleet")
	duration := flag.Duration("duration", 5*time.Second, "measurement time per mode")
	warmup := flag.Duration("warmup", time.Second, "warm-up time per mode")
	payload := flag.Int("payload", 128, "bytes of padding in each message's data")
	window := flag.Int("window", 32, "messages published but not yet received by every subscriber, at most")
	conc := flag.Int("connect-concurrency", 200, "subscribers dialled at a time")
	queue := flag.Int("queue", 4096, "--stream-queue-messages of the engine and the gateways")
	gatewayProcs := flag.Int("gateway-gomaxprocs", 0, "GOMAXPROCS of each gateway process (0: Go's default, the number of CPUs)")
	setCallers := flag.Int("set-callers", 32, "stream::set part: concurrent callers")
	setGroups := flag.Int("set-groups", 32, "stream::set part: groups the callers are spread over in the second shape")
	setTwoEngines := flag.Bool("set-two-engines", true, "stream::set part: also measure two engines sharing the 3-node JetStream store")
	setOnly := flag.Bool("set-only", false, "run only the stream::set and group-size parts")
	setAB := flag.String("set-ab", "", "OLD,NEW: only compare the memory-store stream::set writes/s of two prebuilt trine binaries, alternately (setab.go)")
	setRounds := flag.Int("set-rounds", 3, "-set-ab: rounds, each measuring OLD then NEW")
	setABNodes := flag.String("set-ab-nodes", "0", "-set-ab: the stores measured, comma-separated: 0 the memory store, N JetStream on N NATS nodes with N replicas")
	trineBin := flag.String("trine", "", "a prebuilt trine binary to measure (default: build ./cmd/trine)")
	fleetOnly := flag.Bool("fleet-only", false, "run only the single and fleet modes, not the stream::set part")
	fleetAB := flag.String("fleet-ab", "", "OLD,NEW: only compare the single and fleet modes of two prebuilt trine binaries, alternately (fleetab.go)")
	fleetRounds := flag.Int("fleet-rounds", 3, "-fleet-ab: rounds, each measuring OLD then NEW")
	groupItems := flag.Int("group-items", 50000, "group-size part: items in the full group")
	groupWrites := flag.Int("group-writes", 2000, "group-size part: writes measured in each group")
	flag.Parse()

	if *subscribers < *gateways || *gateways < 1 {
		fatalf("need -gateways >= 1 and -subscribers >= -gateways")
	}
	if *window < 1 || *window > loadgen.MaxWindow {
		fatalf("-window must be from 1 to %d", loadgen.MaxWindow)
	}
	if *setCallers < 1 || *setGroups < 1 {
		fatalf("need -set-callers >= 1 and -set-groups >= 1")
	}
	if !*setOnly {
		if err := loadgen.CheckFDs(*subscribers); err != nil {
			fatalf("%v", err)
		}
	}

	tmp, err := os.MkdirTemp("", "bench-fleet-")
	if err != nil {
		fatalf("%v", err)
	}
	cleanupTmp = func() { _ = os.RemoveAll(tmp) }
	defer cleanupTmp()

	// Stop the servers on ^C or SIGTERM.
	loadgen.ExitOnSignal("fleet", cleanupTmp)

	if *setAB != "" {
		bins := strings.Split(*setAB, ",")
		setEnv := &setEnv{tmp: tmp, callers: *setCallers, groups: *setGroups, payload: *payload, warmup: *warmup, duration: *duration}
		var nodes []int
		for _, f := range strings.Split(*setABNodes, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 0 {
				fatalf("-set-ab-nodes: %q is not a number of nodes", f)
			}
			nodes = append(nodes, n)
		}
		runOnly(func() error { return runSetAB(setEnv, bins, *setRounds, nodes) })
		return
	}

	env := &benchEnv{tmp: tmp, trineBin: filepath.Join(tmp, "trine"), queueMessages: *queue, gatewayProcs: *gatewayProcs, dialer: loadgen.NewDialer(),
		conc: *conc, window: *window, payload: *payload, warmup: *warmup, duration: *duration}
	if *fleetAB != "" {
		bins := strings.Split(*fleetAB, ",")
		runOnly(func() error { return runFleetAB(env, bins, *fleetRounds, *subscribers, *gateways) })
		return
	}
	if *trineBin != "" {
		env.trineBin = *trineBin
	} else {
		loadgen.Progress("building ./cmd/trine")
		if err := loadgen.BuildTrine(env.trineBin); err != nil {
			fatalf("%v", err)
		}
	}

	setEnv := &setEnv{tmp: tmp, trineBin: env.trineBin, callers: *setCallers, groups: *setGroups, payload: *payload,
		warmup: *warmup, duration: *duration, twoEngines: *setTwoEngines}
	if *setOnly {
		runOnly(func() error { return errors.Join(runSetPart(setEnv), runGroupSizePart(tmp, *groupItems, *groupWrites)) })
		return
	}

	fmt.Printf("fleet: %d subscribers of one group, payload pad %d B, window %d, max rate, %v per mode after %v warm-up, GOMAXPROCS %d, %d CPUs\n",
		*subscribers, *payload, *window, *duration, *warmup, runtime.GOMAXPROCS(0), runtime.NumCPU())
	if *gatewayProcs > 0 {
		fmt.Printf("gateways run with GOMAXPROCS=%d\n", *gatewayProcs)
	}
	fmt.Printf("the load generator (this process: %d WebSocket clients and the publisher) shares the %d CPUs with the servers: compare within this run only\n",
		*subscribers, runtime.NumCPU())

	single, serr := runMode(env, *subscribers, 0)
	if serr != nil {
		loadgen.Progress("single: %v", serr)
	}
	fleet, ferr := runMode(env, *subscribers, *gateways)
	if ferr != nil {
		loadgen.Progress("fleet: %v", ferr)
	}
	loadgen.StopAll()

	printResults(single, serr, fleet, ferr, *gateways)
	if *fleetOnly {
		if serr != nil || ferr != nil {
			loadgen.Exit(1, cleanupTmp)
		}
		return
	}
	fmt.Println()
	setErr := errors.Join(runSetPart(setEnv), runGroupSizePart(tmp, *groupItems, *groupWrites))
	loadgen.StopAll()
	if setErr != nil {
		fmt.Fprintf(os.Stderr, "fleet: %v\n", setErr)
	}
	if serr != nil || ferr != nil || setErr != nil {
		cleanupTmp()
		os.Exit(1)
	}
}

// runMode measures one engine with gateways `trine gateway` processes in
// front of it (0: the engine serves the subscribers itself).
func runMode(env *benchEnv, n, gateways int) (res runResult, err error) {
	mode := modeName(gateways)
	e, err := startEngine(env, filepath.Join(env.tmp, "data-"+mode))
	if err != nil {
		return res, err
	}
	procs := []*proc{e}
	defer func() {
		if serr := stopProcs(procs); serr != nil && err == nil {
			err = serr
		}
	}()
	urls := []string{"ws://" + e.stream + "/stream/bench/g"}
	subs := []int{n}
	if gateways > 0 {
		urls, subs = nil, []int{0}
		for i := range gateways {
			g, err := startGateway(env, fmt.Sprintf("gateway %d", i+1), e)
			if err != nil {
				return res, err
			}
			procs = append(procs, g)
			urls = append(urls, "ws://"+g.stream+"/stream/bench/g")
		}
		subs = append(subs, loadgen.SubscribersPerURL(n, gateways)...)
	}
	var pids []string
	for _, p := range procs {
		pids = append(pids, fmt.Sprintf("%s pid %d", p.Name, p.PID))
	}
	loadgen.Progress("%s: %s; connecting %d subscribers", mode, strings.Join(pids, ", "), n)
	t0 := time.Now()
	f, err := loadgen.Connect(env.dialer, urls, n, env.conc, env.window)
	if err != nil {
		return res, err
	}
	defer f.Close()
	loadgen.Progress("%s: %d subscribers connected in %v", mode, n, time.Since(t0).Round(time.Millisecond))
	pub, err := loadgen.NewTrinePublisher(e.grpc, "bench-fleet-publisher", env.payload)
	if err != nil {
		return res, err
	}
	defer pub.Close()
	res, err = run(env, f, pub, procs, subs)
	if err != nil {
		return res, err
	}
	loadgen.Progress("%s: %s deliveries/s (%s msg/s), p50 %v p99 %v, server cores %.2f, %s deliveries/s per core",
		mode, loadgen.Human(res.PerSec()), loadgen.Human(res.MsgRate()), loadgen.RoundLatency(res.P50), loadgen.RoundLatency(res.P99),
		res.cores(), loadgen.Human(res.perCore()))
	return res, nil
}

func modeName(gateways int) string {
	if gateways == 0 {
		return "single"
	}
	return "fleet"
}

func printResults(single runResult, serr error, fleet runResult, ferr error, gateways int) {
	names := []string{"engine"}
	for i := range gateways {
		names = append(names, fmt.Sprintf("gateway %d", i+1))
	}
	modes := []struct {
		name string
		r    runResult
		err  error
	}{{"single", single, serr}, {"fleet", fleet, ferr}}
	fmt.Println()
	tw := loadgen.NewTable()
	fmt.Fprintf(tw, "mode\tdeliveries/s\tmsg/s\tp50\tp99\t%s CPU\tserver cores\tdlv/s per core\tsrv µs/dlv\tbench CPU\tothers\t\n", strings.Join(names, " CPU\t"))
	for _, m := range modes {
		if m.err != nil {
			fmt.Fprintf(tw, "%s\tfailed\t\n", m.name)
			continue
		}
		r := m.r
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t", m.name, loadgen.Human(r.PerSec()), loadgen.Human(r.MsgRate()),
			loadgen.RoundLatency(r.P50), loadgen.RoundLatency(r.P99))
		for _, name := range names {
			if p, ok := r.proc(name); ok {
				fmt.Fprintf(tw, "%.0f%%\t", loadgen.Percent(p.CPU, r.Elapsed))
			} else {
				fmt.Fprintf(tw, "-\t")
			}
		}
		fmt.Fprintf(tw, "%.2f\t%s\t%.2f\t%.0f%%\t%.0f%%\t\n", r.cores(), loadgen.Human(r.perCore()), loadgen.Micros(r.CPUPerDelivery()),
			loadgen.Percent(r.BenchCPU, r.Elapsed), loadgen.Percent(r.OtherCPU, r.Elapsed))
	}
	tw.Flush()

	// Per process: deliveries are those of its own subscribers; µs/msg is
	// its CPU per message published, what the engine's ingest costs once it
	// serves no subscribers.
	fmt.Println()
	tw = loadgen.NewTable()
	fmt.Fprintln(tw, "mode\tprocess\tsubscribers\tCPU\tµs/msg\tswitches/s\tdeliveries/s\tµs/dlv\twrites/s\tdlv/write\t")
	for _, m := range modes {
		if m.err != nil {
			continue
		}
		r := m.r
		msgs := r.MsgRate() * r.Elapsed.Seconds()
		for _, p := range r.procs {
			own := float64(r.Deliveries) * float64(p.subs) / float64(r.Subscribers)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f%%\t%.0f\t%s\t", m.name, p.Name, p.subs,
				loadgen.Percent(p.CPU, r.Elapsed), loadgen.Micros(p.CPU)/msgs, loadgen.Human(p.switches))
			if p.subs > 0 {
				fmt.Fprintf(tw, "%s\t%.2f\t%s\t%.1f\t\n", loadgen.Human(own/r.Elapsed.Seconds()), loadgen.Micros(p.CPU)/own,
					loadgen.Human(float64(p.Writes)/r.Elapsed.Seconds()), own/float64(max(p.Writes, 1)))
			} else {
				fmt.Fprintf(tw, "-\t-\t%s\t-\t\n", loadgen.Human(float64(p.Writes)/r.Elapsed.Seconds()))
			}
		}
	}
	tw.Flush()

	fmt.Println()
	for _, m := range modes {
		if m.err != nil {
			fmt.Printf("%s failed: %s\n", m.name, loadgen.OneLine(m.err))
		}
	}
	if serr != nil || ferr != nil {
		fmt.Printf("target (fleet/single per-core throughput >= %.1f): not measured\n", targetRatio)
		return
	}
	fmt.Printf("fleet/single deliveries/s:            %.2f\n", fleet.PerSec()/single.PerSec())
	r := fleet.perCore() / single.perCore()
	fmt.Printf("fleet/single per-core throughput:     %.2f   target >= %.1f: %s\n", r, targetRatio, loadgen.Verdict(r >= targetRatio))
	fmt.Printf("fleet/single server CPU per delivery: %.2f\n", loadgen.Ratio(fleet.CPUPerDelivery(), single.CPUPerDelivery()))
}

// proc returns the figures of the process called name.
func (r runResult) proc(name string) (procStat, bool) {
	for _, p := range r.procs {
		if p.Name == name {
			return p, true
		}
	}
	return procStat{}, false
}

var cleanupTmp = func() {}

// fatalf stops the servers, removes the temporary directory and exits.
func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fleet: "+format+"\n", args...)
	loadgen.Exit(1, cleanupTmp)
}

// runOnly runs one part alone (-set-only, -set-ab), then stops the
// servers; on an error it exits 1.
func runOnly(part func() error) {
	fmt.Printf("GOMAXPROCS %d, %d CPUs\n", runtime.GOMAXPROCS(0), runtime.NumCPU())
	err := part()
	loadgen.StopAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fleet: %v\n", err)
		cleanupTmp()
		os.Exit(1)
	}
}
