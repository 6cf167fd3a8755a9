// Command iii measures a call over iii's JSON-over-WebSocket worker protocol
// (engine/iiiserver): a caller worker sends invokefunction to the engine, the
// engine invokes an echo worker, and the invocationresult comes back the same
// way. The baseline, in the same run, is a bare coder/websocket echo server
// answering the same invokefunction message with an invocationresult (one
// hop where the iii path makes two, so its floor is about 2x the baseline's
// latency). The engine (the real `trine engine --store memory` binary) and
// the baseline server (this binary, re-executed) each run in a process of
// their own; both workers are raw WebSocket clients in this process, on
// 127.0.0.1. Only ratios within one run mean anything, since the load
// generator shares the CPU with the servers. CPU time per call is reported
// for this process and for the server.
//
//	go run ./bench/iii [-duration 5s] [-warmup 1s] [-concurrency 1,64] [-payload 64] [-trine-bin a,b] [-rounds 1] [-cpuprofile f]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-serve" {
		fs := flag.NewFlagSet("iii", flag.ExitOnError)
		kind := fs.String("serve", "", "internal: run a server process (baseline, or trine with -cpuprofile)")
		profile := fs.String("cpuprofile", "", "CPU profile of the server")
		_ = fs.Parse(os.Args[1:])
		os.Exit(serve(*kind, *profile))
	}
	loadgen.Main("bench/iii", run)
}

// run is main without process globals.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("iii", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := fs.Duration("warmup", time.Second, "warm-up time per scenario")
	size := fs.Int("payload", 64, "payload size in bytes (a JSON string)")
	levels := fs.String("concurrency", "1,64", "comma-separated numbers of calls in flight")
	cpuprofile := fs.String("cpuprofile", "", "CPU-profile the engine (this binary serving the same engine and iii server, whole life) into FILE, and this process during the first iii level into FILE.bench")
	trineBin := fs.String("trine-bin", "", "comma-separated engine binaries to measure in turn (default: build ./cmd/trine)")
	rounds := fs.Int("rounds", 1, "repeat the whole run this many times")
	if err := fs.Parse(args); err != nil {
		return err
	}
	payload, err := json.Marshal(strings.Repeat("x", max(0, *size-2)))
	if err != nil {
		return err
	}
	conc, err := loadgen.ParseLevels(*levels)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-iii-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	defer loadgen.StopAll()
	// With -cpuprofile the engine is this binary (-serve trine): nothing
	// to build.
	bins := []string{"profiled"}
	if *cpuprofile == "" || *trineBin != "" {
		bins, err = loadgen.TrineBinaries(*trineBin, tmp)
	}
	if err != nil {
		return err
	}
	if *cpuprofile != "" && len(bins) > 1 {
		return fmt.Errorf("-cpuprofile takes one engine")
	}

	base, baseURL, err := startBaselineProcess(self)
	if err != nil {
		return err
	}
	ws, err := dial(ctx, baseURL)
	if err != nil {
		return fmt.Errorf("baseline caller: %w", err)
	}
	baseCaller := newCaller(ws, payload)
	defer baseCaller.close()
	scenarios := []loadgen.Scenario{{Name: "baseline", Call: baseCaller.call, ServerPID: base.PID}}

	for i, bin := range bins {
		name := "iii"
		if len(bins) > 1 {
			name = fmt.Sprintf("iii:%c", 'A'+i)
			fmt.Fprintf(stdout, "%s = %s\n", name, bin)
		}
		dir, err := os.MkdirTemp(tmp, "data-")
		if err != nil {
			return err
		}
		p, url, err := startTrine(name, bin, self, dir, *cpuprofile)
		if err != nil {
			return err
		}
		ws, err := dialWorker(ctx, url, "bench-caller")
		if err != nil {
			return fmt.Errorf("iii caller: %w", err)
		}
		c := newCaller(ws, payload)
		defer c.close()
		callee, err := attachCallee(ctx, url, c)
		if err != nil {
			return err
		}
		defer callee.close()
		scenarios = append(scenarios, loadgen.Scenario{Name: name, Call: c.call, Profile: i == 0, ServerPID: p.PID})
	}

	fmt.Fprintf(stdout, "payload %d bytes, %v per scenario after %v warm-up, GOMAXPROCS %d; CPU per call: this process (callers, callee worker) + the server process\n\n",
		len(payload), *duration, *warmup, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "%-10s %5s %10s %10s %10s %10s %10s %10s\n", "scenario", "conc", "calls/s", "p50", "p99", "cpu/call", "bench", "server")
	profile := ""
	if *cpuprofile != "" {
		profile = *cpuprofile + ".bench"
	}
	for round := 1; round <= *rounds; round++ {
		if *rounds > 1 {
			fmt.Fprintf(stdout, "round %d\n", round)
		}
		results, err := loadgen.RunLevels(ctx, conc, scenarios, *warmup, *duration, profile,
			func(name string, c int, m loadgen.Measurement) { printRow(stdout, name, c, m) })
		if err != nil {
			return err
		}
		profile = ""
		fmt.Fprintln(stdout)
		for i, c := range conc {
			base := results[i][0]
			for j, sc := range scenarios[1:] {
				m := results[i][j+1]
				fmt.Fprintf(stdout, "conc %-3d %-6s throughput/baseline = %.2f   p50/baseline = %.2f   CPU per call %.1f µs (baseline %.1f µs)\n",
					c, sc.Name, m.PerSec/base.PerSec, loadgen.Ratio(m.P50, base.P50),
					loadgen.Micros(m.CPUPerCall()+m.ServerCPUPerCall()), loadgen.Micros(base.CPUPerCall()+base.ServerCPUPerCall()))
				if c == 64 {
					ratio := m.PerSec / base.PerSec
					fmt.Fprintf(stdout, "target %s: throughput at 64 in flight >= 0.60 x baseline: %.2f %s\n", sc.Name, ratio, loadgen.Verdict(ratio >= 0.6))
				}
			}
		}
	}
	return nil
}

func printRow(w io.Writer, name string, c int, r loadgen.Measurement) {
	fmt.Fprintf(w, "%-10s %5d %10.0f %10v %10v %8.1fµs %8.1fµs %8.1fµs\n", name, c, r.PerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		loadgen.Micros(r.CPUPerCall()+r.ServerCPUPerCall()), loadgen.Micros(r.CPUPerCall()), loadgen.Micros(r.ServerCPUPerCall()))
}
