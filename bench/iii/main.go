// Command iii measures a call over iii's JSON-over-WebSocket worker protocol
// (engine/iiiserver): a caller worker sends invokefunction to the engine, the
// engine invokes an echo worker, and the invocationresult comes back the same
// way. The baseline, in the same run, is a bare coder/websocket echo server
// answering the same invokefunction message with an invocationresult (one
// hop where the iii path makes two, so its floor is about 2x the baseline's
// latency). Both workers and the baseline server are raw WebSocket clients
// and servers in this process, on 127.0.0.1; only ratios within one run
// mean anything, since the load generator shares the CPU with the engine.
//
//	go run ./bench/iii [-duration 5s] [-warmup 1s] [-concurrency 1,64] [-payload 64] [-cpuprofile f]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

func main() { loadgen.Main("bench/iii", run) }

// run is main without process globals.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("iii", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := fs.Duration("warmup", time.Second, "warm-up time per scenario")
	size := fs.Int("payload", 64, "payload size in bytes (a JSON string)")
	levels := fs.String("concurrency", "1,64", "comma-separated numbers of calls in flight")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the iii scenario at the first level")
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

	base, err := startBaseline()
	if err != nil {
		return err
	}
	defer base.close()
	ws, err := dial(ctx, base.url)
	if err != nil {
		return fmt.Errorf("baseline caller: %w", err)
	}
	baseCaller := newCaller(ws, payload)
	defer baseCaller.close()

	st, err := startStack(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	if ws, err = st.dialWorker(ctx, "bench-caller"); err != nil {
		return fmt.Errorf("iii caller: %w", err)
	}
	iiiCaller := newCaller(ws, payload)
	defer iiiCaller.close()

	fmt.Fprintf(stdout, "payload %d bytes, %v per scenario after %v warm-up, GOMAXPROCS %d\n\n", len(payload), *duration, *warmup, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "%-10s %5s %12s %10s %10s\n", "scenario", "conc", "calls/s", "p50", "p99")
	results, err := loadgen.RunLevels(ctx, conc, []loadgen.Scenario{
		{Name: "baseline", Call: baseCaller.call}, {Name: "iii", Call: iiiCaller.call, Profile: true},
	}, *warmup, *duration, *cpuprofile, func(name string, c int, m loadgen.Measurement) { printRow(stdout, name, c, m) })
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	for i, c := range conc {
		r := struct{ base, iii loadgen.Measurement }{results[i][0], results[i][1]}
		fmt.Fprintf(stdout, "conc %-3d throughput iii/baseline = %.2f   p50 iii/baseline = %.2f\n",
			c, r.iii.PerSec/r.base.PerSec, loadgen.Ratio(r.iii.P50, r.base.P50))
	}
	return nil
}

func printRow(w io.Writer, name string, c int, r loadgen.Measurement) {
	fmt.Fprintf(w, "%-10s %5d %12.0f %10v %10v\n", name, c, r.PerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
}
