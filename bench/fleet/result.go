package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// procStat is one server process's share of a run.
type procStat struct {
	loadgen.Usage         // its CPU time and write system calls over the measured window
	subs          int     // subscribers on its stream listener
	switches      float64 // context switches a second, voluntary and not, over the whole run (warm-up included)
}

// runResult is one measured mode.
type runResult struct {
	loadgen.Result
	procs []procStat // Result.Servers with their subscribers
}

// cores is the number of CPU cores the server processes used, on average.
func (r runResult) cores() float64 { return r.ServerCPU().Seconds() / r.Elapsed.Seconds() }

// perCore is deliveries per second per server core used.
func (r runResult) perCore() float64 {
	if c := r.cores(); c > 0 {
		return r.PerSec() / c
	}
	return 0
}

// run publishes with pub as fast as the window allows for env.warmup then
// env.duration, and measures the CPU time of every process in procs
// (loadgen.Run). subs[i] is the number of subscribers of procs[i].
func run(env *benchEnv, f *loadgen.Subscribers, pub loadgen.Publisher, procs []*proc, subs []int) (runResult, error) {
	before := make([]int64, len(procs))
	for i, p := range procs {
		before[i] = contextSwitches(p.PID)
	}
	t0 := time.Now()
	r, err := loadgen.Run(f, pub, loadgen.RunConfig{Warmup: env.warmup, Duration: env.duration, Servers: processes(procs)})
	res := runResult{Result: r}
	for i, u := range r.Servers {
		res.procs = append(res.procs, procStat{Usage: u, subs: subs[i], switches: float64(contextSwitches(procs[i].PID)-before[i]) / time.Since(t0).Seconds()})
	}
	return res, err
}

// contextSwitches is the number of context switches of every thread of
// process pid so far, from /proc/<pid>/task/*/status.
func contextSwitches(pid int) int64 {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, _ := os.ReadDir(dir)
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				k, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += k
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				k, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += k
			}
		}
	}
	return n
}
