package main

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// result is one scenario at one concurrency level.
type result struct {
	perSec   float64
	p50, p99 time.Duration
	cpuPer   time.Duration // CPU of the whole process (servers and clients) per request
}

// measure runs call from c goroutines, so that c calls are in flight: first
// for warmup, then for d while recording each call's latency and the
// process's CPU time. The first failed call ends the measurement with its
// error.
func measure(ctx context.Context, call func(context.Context) error, c int, warmup, d time.Duration) (result, error) {
	if _, _, err := loadgen.Drive(ctx, call, c, warmup, false); err != nil {
		return result{}, err
	}
	cpu0 := processCPU()
	all, elapsed, err := loadgen.Drive(ctx, call, c, d, true)
	if err != nil {
		return result{}, err
	}
	cpu := processCPU() - cpu0
	if len(all) == 0 {
		return result{}, errors.New("no call completed")
	}
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return result{perSec: float64(len(all)) / elapsed.Seconds(), p50: q(0.50), p99: q(0.99),
		cpuPer: cpu / time.Duration(len(all))}, nil
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
