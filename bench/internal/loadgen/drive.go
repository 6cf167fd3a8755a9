package loadgen

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Drive calls call in a loop on c goroutines for d, and returns the
// latencies (if record) and the time until the last call returned.
func Drive(ctx context.Context, call func(context.Context) error, c int, d time.Duration, record bool) ([]time.Duration, time.Duration, error) {
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
