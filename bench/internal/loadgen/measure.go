package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Measurement is one scenario at one concurrency level.
type Measurement struct {
	Calls    int
	PerSec   float64
	P50, P99 time.Duration
	// CPU is this process's CPU time (every goroutine: servers and
	// clients alike) during the measurement.
	CPU time.Duration
	// ServerCPU is the CPU time of the server process the scenario
	// calls (Scenario.ServerPID), 0 without one.
	ServerCPU time.Duration
}

// CPUPerCall is CPU divided by Calls.
func (m Measurement) CPUPerCall() time.Duration {
	if m.Calls == 0 {
		return 0
	}
	return m.CPU / time.Duration(m.Calls)
}

// ServerCPUPerCall is ServerCPU divided by Calls.
func (m Measurement) ServerCPUPerCall() time.Duration {
	if m.Calls == 0 {
		return 0
	}
	return m.ServerCPU / time.Duration(m.Calls)
}

// Measure runs call from c goroutines, so that c calls are in flight: first
// for warmup, then for d while recording each call's latency and the
// process's CPU time. The first failed call ends the measurement with its
// error.
func Measure(ctx context.Context, call func(context.Context) error, c int, warmup, d time.Duration) (Measurement, error) {
	return MeasureServer(ctx, call, c, warmup, d, 0)
}

// MeasureServer is Measure that also takes the CPU time of the server
// process pid (none if 0) during the measurement.
func MeasureServer(ctx context.Context, call func(context.Context) error, c int, warmup, d time.Duration, pid int) (Measurement, error) {
	if _, _, err := Drive(ctx, call, c, warmup, false); err != nil {
		return Measurement{}, err
	}
	serverCPU := func() time.Duration {
		if pid == 0 {
			return 0
		}
		t, _ := CPUTime(pid)
		return t
	}
	cpu0, srv0 := SelfCPU(), serverCPU()
	all, elapsed, err := Drive(ctx, call, c, d, true)
	if err != nil {
		return Measurement{}, err
	}
	cpu, srv := SelfCPU()-cpu0, serverCPU()-srv0
	if len(all) == 0 {
		return Measurement{}, errors.New("no call completed")
	}
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return Measurement{Calls: len(all), PerSec: float64(len(all)) / elapsed.Seconds(), P50: q(0.50), P99: q(0.99), CPU: cpu, ServerCPU: srv}, nil
}

// ParseLevels parses a -concurrency flag: comma-separated positive counts.
func ParseLevels(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad -concurrency %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// Main runs an in-process load tool: run with the command line, ended by
// SIGINT, then a check that every goroutine it started has stopped. Any
// failure prints "prog: error" and exits 1.
func Main(prog string, run func(ctx context.Context, args []string, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	before := runtime.NumGoroutine()
	err := run(ctx, os.Args[1:], os.Stdout)
	if err == nil {
		err = CheckGoroutines(before, 10*time.Second)
	}
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, prog+":", err)
		}
		os.Exit(1)
	}
}
