package main

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// result is one scenario at one concurrency level.
type result struct {
	perSec   float64
	p50, p99 time.Duration
}

// measure runs call from c goroutines, so that c calls are in flight: first
// for warmup, then for d while recording each call's latency. The first
// failed call ends the measurement with its error.
func measure(ctx context.Context, call func(context.Context) error, c int, warmup, d time.Duration) (result, error) {
	if _, _, err := loadgen.Drive(ctx, call, c, warmup, false); err != nil {
		return result{}, err
	}
	all, elapsed, err := loadgen.Drive(ctx, call, c, d, true)
	if err != nil {
		return result{}, err
	}
	if len(all) == 0 {
		return result{}, errors.New("no call completed")
	}
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return result{perSec: float64(len(all)) / elapsed.Seconds(), p50: q(0.50), p99: q(0.99)}, nil
}
