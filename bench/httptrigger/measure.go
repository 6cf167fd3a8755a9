package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
	if _, _, err := drive(ctx, call, c, warmup, false); err != nil {
		return result{}, err
	}
	cpu0 := processCPU()
	all, elapsed, err := drive(ctx, call, c, d, true)
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

// drive calls call in a loop on c goroutines for d, and returns the
// latencies (if record) and the time until the last call returned.
func drive(ctx context.Context, call func(context.Context) error, c int, d time.Duration, record bool) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		stop     atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	lat := make([][]time.Duration, c)
	start := time.Now()
	for i := range c {
		wg.Go(func() {
			ls := make([]time.Duration, 0, 1<<12)
			for !stop.Load() {
				t0 := time.Now()
				if err := call(ctx); err != nil {
					errOnce.Do(func() { firstErr = err })
					stop.Store(true)
					cancel()
					return
				}
				if record {
					ls = append(ls, time.Since(t0))
				}
			}
			lat[i] = ls
		})
	}
	timer := time.NewTimer(d)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr == nil {
		firstErr = context.Cause(ctx) // interrupted from outside
	}
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return slices.Concat(lat...), elapsed, nil
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
