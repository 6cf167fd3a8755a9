// Command httptrigger measures an HTTP request through the http trigger
// (package httptrigger): a net/http client sends GET /hello/<n> over
// loopback to an httptrigger.Provider served by net/http, which calls the
// built-in function bench::hello through the engine; the function reads
// the id from the payload's path_params and returns
// {"status_code":200,"body":{"hello":<n>}}. It runs three scenarios in
// one process, each server on its own 127.0.0.1 listener:
//
//   - trigger: the Provider without channels;
//   - trigger+channels: the same with Config.Channels set to a
//     channels.Hub, so every request also opens its request_body and
//     response data channels (the function never dials them);
//   - baseline: a bare net/http handler doing the function's work (parse
//     the id from the path, marshal the same body).
//
// Every answer's status, Content-Type and body are checked. Only ratios
// within one run mean anything, since the load generator shares the CPU
// with the servers.
//
//	go run ./bench/httptrigger [-duration 5s] [-warmup 1s] [-concurrency 1,64] [-cpuprofile f]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

func main() { loadgen.Main("bench/httptrigger", run) }

// The scenarios, in the order they run at each level.
const (
	scBaseline = iota
	scTrigger
	scChannels
	nScenarios
)

var scenarioNames = [nScenarios]string{"baseline", "trigger", "trigger+channels"}

// run is main without process globals.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("httptrigger", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := fs.Duration("warmup", time.Second, "warm-up time per scenario")
	levels := fs.String("concurrency", "1,64", "comma-separated numbers of requests in flight")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the trigger+channels scenario at the first level")
	if err := fs.Parse(args); err != nil {
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
	plain, err := startStack(ctx, false)
	if err != nil {
		return fmt.Errorf("trigger stack: %w", err)
	}
	defer plain.close()
	withChannels, err := startStack(ctx, true)
	if err != nil {
		return fmt.Errorf("trigger+channels stack: %w", err)
	}
	defer withChannels.close()

	var clients [nScenarios]*client
	for i, url := range [nScenarios]string{base.url, plain.url, withChannels.url} {
		tr := newTransport(slices.Max(conc))
		defer tr.CloseIdleConnections() // before the servers close: deferred later, runs first
		clients[i] = &client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, base: url}
	}

	fmt.Fprintf(stdout, "GET /hello/<n>, %v per scenario after %v warm-up, GOMAXPROCS %d\n\n", *duration, *warmup, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "%-17s %5s %11s %10s %10s %12s\n", "scenario", "conc", "requests/s", "p50", "p99", "CPU µs/req")
	scs := make([]loadgen.Scenario, nScenarios)
	for sc := range nScenarios {
		scs[sc] = loadgen.Scenario{Name: scenarioNames[sc], Call: clients[sc].get, Profile: sc == scChannels}
	}
	results, err := loadgen.RunLevels(ctx, conc, scs, *warmup, *duration, *cpuprofile,
		func(name string, c int, m loadgen.Measurement) { printRow(stdout, name, c, m) })
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	for i, c := range conc {
		r := results[i]
		fmt.Fprintf(stdout, "conc %-3d trigger/baseline:          throughput %.2f  p50 %.2f  CPU/req %.2f\n",
			c, r[scTrigger].PerSec/r[scBaseline].PerSec, loadgen.Ratio(r[scTrigger].P50, r[scBaseline].P50), loadgen.Ratio(r[scTrigger].CPUPerCall(), r[scBaseline].CPUPerCall()))
		fmt.Fprintf(stdout, "conc %-3d trigger+channels/trigger:  throughput %.2f  p50 %.2f  CPU/req %.2f\n",
			c, r[scChannels].PerSec/r[scTrigger].PerSec, loadgen.Ratio(r[scChannels].P50, r[scTrigger].P50), loadgen.Ratio(r[scChannels].CPUPerCall(), r[scTrigger].CPUPerCall()))
	}
	return nil
}

func printRow(w io.Writer, name string, c int, r loadgen.Measurement) {
	fmt.Fprintf(w, "%-17s %5d %11.0f %10v %10v %12.1f\n", name, c, r.PerSec,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), loadgen.Micros(r.CPUPerCall()))
}
