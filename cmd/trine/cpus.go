package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/trinehq/trine/internal/cpushare"
)

// processWide is set by main: the process is trine itself, not a test
// driving run, so --cpus may set GOMAXPROCS.
var processWide bool

// cpuEvery is how often --cpus auto looks at the host again, at most.
const cpuEvery = time.Second

// cpuLookShare bounds the CPU the looks take: the next look waits at
// least this many times as long as the last one took, so that a host of
// many thousand processes (one read of /proc/<pid>/comm each) costs at
// most about a five-hundredth of one CPU.
const cpuLookShare = 500

// nextLook is how long to wait after a look that took took.
func nextLook(took time.Duration) time.Duration {
	return max(cpuEvery, cpuLookShare*took)
}

// sizeCPUs sizes the Go scheduler (GOMAXPROCS) and the gateway's socket
// writers (setWriters) to --cpus: N as given, or auto, the process's
// share of the host (cpushare: its affinity mask and cgroup quota, split
// with the busy trine servers on the same CPUs). With auto it returns what
// looks at the host again every cpuEvery (longer on a host where a look is
// slow: nextLook) until its ctx ends, for the process's group to run;
// GOMAXPROCS set in the environment wins, and the writers follow it.
func sizeCPUs(cfg engineConfig, log *slog.Logger, setWriters func(int)) (resize func(context.Context) error) {
	none := func(context.Context) error { return nil }
	if !processWide {
		return none
	}
	if cfg.CPUs > 0 {
		runtime.GOMAXPROCS(cfg.CPUs)
		setWriters(cfg.CPUs)
		return none
	}
	if _, ok := os.LookupEnv("GOMAXPROCS"); ok {
		return none
	}
	sizer := cpushare.NewSizer(cpushare.System())
	cur := 0
	apply := func() time.Duration {
		start := time.Now()
		sh := sizer.CPUs()
		if sh.CPUs != cur {
			cur = sh.CPUs
			runtime.GOMAXPROCS(sh.CPUs)
			setWriters(sh.CPUs)
			log.Info("CPUs sized", "cpus", sh.CPUs, "affinity", sh.Affinity, "quota", sh.Quota, "busy_trine_servers", sh.Peers)
		}
		return time.Since(start)
	}
	took := apply()
	return func(ctx context.Context) error {
		t := time.NewTimer(nextLook(took))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				t.Reset(nextLook(apply()))
			}
		}
	}
}
