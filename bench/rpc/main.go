// Command rpc measures a full trigger round trip (caller SDK -> engine ->
// worker SDK -> back) over real gRPC on loopback, against a bare grpc-go
// unary echo doing the same I/O, in one run. The engine (the real `trine
// engine --store memory` binary) and the echo server (this binary,
// re-executed) each run in a process of their own; the callers and the
// callee worker run in this one, so both sides pay the same process
// boundary. Only ratios within one run mean anything: the load generator
// shares the CPU with the servers. CPU time per call is reported for this
// process (callers, and the callee worker for trine) and for the server.
//
// With -request-format, the payload is a 10-field object and a further
// scenario, trine+fmt, calls a function whose request_format (a 10-field
// schema) the engine checks on every call: the difference from trine is
// the cost of the check.
//
// With -trine-bin OLD,NEW, every engine binary is measured in turn at each
// level (an A/B in one run); -rounds repeats the whole run.
//
//	go run ./bench/rpc [-duration 5s] [-concurrency 1,64] [-payload 64] [-request-format] [-trine-bin a,b] [-rounds 1] [-cpuprofile f]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/internal/enginetest"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
	trine "github.com/trinehq/trine/worker-sdk"
)

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := flag.Duration("warmup", time.Second, "warm-up time per scenario")
	size := flag.Int("payload", 64, "payload size in bytes")
	levels := flag.String("concurrency", "1,64", "comma-separated caller counts")
	cpuprofile := flag.String("cpuprofile", "", "CPU-profile the engine (this binary serving the same gRPC engine, whole life) into FILE, and this process during the first trine level into FILE.sdk")
	withFormat := flag.Bool("request-format", false, "also call a function with a 10-field request_format, with a 10-field payload (-payload is ignored)")
	trineBin := flag.String("trine-bin", "", "comma-separated engine binaries to measure in turn (default: build ./cmd/trine)")
	rounds := flag.Int("rounds", 1, "repeat the whole run this many times")
	serveKind := flag.String("serve", "", "internal: run a server process (echo, or trine with -cpuprofile)")
	flag.Parse()
	if *serveKind != "" {
		os.Exit(serve(*serveKind, *cpuprofile))
	}

	tmp, err := os.MkdirTemp("", "bench-rpc-")
	if err != nil {
		log.Fatal(err)
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	loadgen.ExitOnSignal("bench/rpc", cleanup)
	var closeWorkers func()
	fatal := func(err error) {
		fmt.Fprintln(os.Stderr, "bench/rpc:", err)
		if closeWorkers != nil {
			closeWorkers()
		}
		loadgen.Exit(1, cleanup)
	}

	payload, _ := json.Marshal(strings.Repeat("x", max(0, *size-2)))
	if *withFormat {
		payload = []byte(enginetest.TenFieldsValue)
	}
	conc, err := loadgen.ParseLevels(*levels)
	if err != nil {
		fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	// With -cpuprofile the engine is this binary (-serve trine): nothing
	// to build.
	bins := []string{"profiled"}
	if *cpuprofile == "" || *trineBin != "" {
		bins, err = loadgen.TrineBinaries(*trineBin, tmp)
	}
	if err != nil {
		fatal(err)
	}
	if *cpuprofile != "" && len(bins) > 1 {
		fatal(fmt.Errorf("-cpuprofile takes one engine"))
	}

	echo, echoAddr, err := startEcho(self)
	if err != nil {
		fatal(err)
	}
	scenarios := []loadgen.Scenario{{Name: "bare-grpc", Call: bareCaller(echoAddr, payload), ServerPID: echo.PID}}
	ctx := context.Background()
	raw := json.RawMessage(payload)
	var workers []*trine.Worker
	closeWorkers = func() {
		for _, w := range workers {
			_ = w.Close()
		}
	}
	for i, bin := range bins {
		name := "trine"
		if len(bins) > 1 {
			name = fmt.Sprintf("trine:%c", 'A'+i)
			fmt.Printf("%s = %s\n", name, bin)
		}
		dir, err := os.MkdirTemp(tmp, "data-")
		if err != nil {
			fatal(err)
		}
		p, addr, err := startTrine(name, bin, self, dir, *cpuprofile)
		if err != nil {
			fatal(err)
		}
		callee := trine.RegisterWorker(addr, trine.WithName("bench-callee"))
		caller := trine.RegisterWorker(addr, trine.WithName("bench-caller"))
		workers = append(workers, callee, caller)
		for _, w := range []*trine.Worker{callee, caller} {
			if err := w.Connect(ctx); err != nil {
				fatal(err)
			}
		}
		if err := callee.RegisterFunction(ctx, "bench::echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
			fatal(err)
		}
		scenarios = append(scenarios, loadgen.Scenario{Name: name, Profile: i == 0, ServerPID: p.PID, Call: func(ctx context.Context) error {
			_, err := caller.Trigger(ctx, "bench::echo", raw)
			return err
		}})
		if *withFormat {
			if err := callee.RegisterFunction(ctx, "bench::typed", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil },
				trine.WithRequestFormat(enginetest.TenFieldsSchema)); err != nil {
				fatal(err)
			}
			scenarios = append(scenarios, loadgen.Scenario{Name: name + "+fmt", ServerPID: p.PID, Call: func(ctx context.Context) error {
				_, err := caller.Trigger(ctx, "bench::typed", raw)
				return err
			}})
		}
	}

	fmt.Printf("payload %d bytes, %v per scenario after %v warm-up, GOMAXPROCS %d; CPU per call: this process (callers, callee worker) + the server process\n\n",
		len(payload), *duration, *warmup, runtimeProcs())
	fmt.Printf("%-12s %5s %10s %10s %10s %10s %10s %10s\n", "scenario", "conc", "calls/s", "p50", "p99", "cpu/call", "bench", "server")
	profile := ""
	if *cpuprofile != "" {
		profile = *cpuprofile + ".sdk"
	}
	for round := 1; round <= *rounds; round++ {
		if *rounds > 1 {
			fmt.Printf("round %d\n", round)
		}
		results, err := loadgen.RunLevels(ctx, conc, scenarios, *warmup, *duration, profile, print)
		if err != nil {
			fatal(fmt.Errorf("call failed: %v", err))
		}
		profile = ""
		summarize(conc, scenarios, results, *withFormat)
	}
	closeWorkers()
	loadgen.Exit(0, cleanup)
}

// summarize prints each trine scenario against the bare echo at every level,
// and the targets.
func summarize(conc []int, scs []loadgen.Scenario, results [][]loadgen.Measurement, withFormat bool) {
	fmt.Println()
	for i, c := range conc {
		bare := results[i][0]
		for j, sc := range scs[1:] {
			m := results[i][j+1]
			fmt.Printf("conc %-3d %-12s throughput/bare = %.2f   p50/bare = %.2f   CPU per call %.1f µs (bare %.1f µs)\n", c, sc.Name,
				m.PerSec/bare.PerSec, loadgen.Ratio(m.P50, bare.P50), loadgen.Micros(m.CPUPerCall()+m.ServerCPUPerCall()),
				loadgen.Micros(bare.CPUPerCall()+bare.ServerCPUPerCall()))
		}
	}
	for i, c := range conc {
		bare := results[i][0]
		for j, sc := range scs[1:] {
			if strings.HasSuffix(sc.Name, "+fmt") {
				continue
			}
			m := results[i][j+1]
			switch c {
			case 64:
				ratio := m.PerSec / bare.PerSec
				fmt.Printf("target %s: throughput at 64 callers >= 0.80 x bare: %.2f %s\n", sc.Name, ratio, loadgen.Verdict(ratio >= 0.8))
			case 1:
				ratio := loadgen.Ratio(m.P50, bare.P50)
				fmt.Printf("target %s: p50 at 1 caller <= 1.40 x bare: %.2f %s\n", sc.Name, ratio, loadgen.Verdict(ratio <= 1.4))
			}
		}
	}
	if !withFormat {
		return
	}
	fmt.Println()
	for i, c := range conc {
		for j := 1; j+1 < len(scs); j++ {
			if !strings.HasSuffix(scs[j+1].Name, "+fmt") {
				continue
			}
			plain, checked := results[i][j], results[i][j+1]
			// CPU per call counts both processes (callers, engine and
			// worker): the difference is what the check adds.
			total := func(m loadgen.Measurement) time.Duration { return m.CPUPerCall() + m.ServerCPUPerCall() }
			fmt.Printf("conc %-3d throughput %s/%s = %.2f   p50 %v -> %v   CPU per call %v -> %v (%+.1f µs)\n", c, scs[j+1].Name, scs[j].Name,
				checked.PerSec/plain.PerSec, plain.P50.Round(time.Microsecond), checked.P50.Round(time.Microsecond),
				total(plain).Round(time.Microsecond/10), total(checked).Round(time.Microsecond/10),
				loadgen.Micros(total(checked)-total(plain)))
		}
	}
}

func print(name string, c int, r loadgen.Measurement) {
	fmt.Printf("%-12s %5d %10.0f %10v %10v %8.1fµs %8.1fµs %8.1fµs\n", name, c, r.PerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		loadgen.Micros(r.CPUPerCall()+r.ServerCPUPerCall()), loadgen.Micros(r.CPUPerCall()), loadgen.Micros(r.ServerCPUPerCall()))
}

func bareCaller(addr string, payload []byte) func(context.Context) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	c := trinev1.NewEngineServiceClient(cc)
	return func(ctx context.Context) error {
		_, err := c.Trigger(ctx, &trinev1.TriggerRequest{FunctionId: "bench::echo", Payload: payload})
		return err
	}
}
