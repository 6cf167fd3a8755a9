package loadgen

import (
	"context"
	"fmt"
	"time"
)

// Scenario is one thing a comparison measures at each level of
// concurrency: the baseline, or Trine doing the same I/O.
type Scenario struct {
	Name string
	Call func(context.Context) error
	// Profile marks the scenario whose first level is CPU-profiled when a
	// profile path is given.
	Profile bool
	// ServerPID is the process serving the calls, when it is not this
	// one: its CPU time is measured too (Measurement.ServerCPU).
	ServerPID int
}

// RunLevels measures every scenario at every level in turn (Measure: warmup,
// then d), calls row after each measurement, and CPU-profiles the first
// level of the Profile scenario into cpuprofile when it is not "".
// results[i][j] is level i, scenario j.
func RunLevels(ctx context.Context, levels []int, scs []Scenario, warmup, d time.Duration, cpuprofile string,
	row func(name string, level int, m Measurement)) ([][]Measurement, error) {
	results := make([][]Measurement, len(levels))
	for i, c := range levels {
		results[i] = make([]Measurement, len(scs))
		for j, sc := range scs {
			stop := func() {}
			if i == 0 && sc.Profile && cpuprofile != "" {
				var err error
				if stop, err = StartProfile(cpuprofile); err != nil {
					return nil, err
				}
			}
			m, err := MeasureServer(ctx, sc.Call, c, warmup, d, sc.ServerPID)
			stop()
			if err != nil {
				return nil, fmt.Errorf("%s, %d in flight: %w", sc.Name, c, err)
			}
			row(sc.Name, c, m)
			results[i][j] = m
		}
	}
	return results, nil
}
