package main

import "github.com/trinehq/trine/bench/internal/loadgen"

// procStat is one server process's share of a run.
type procStat struct {
	loadgen.Usage     // its CPU time and write system calls over the measured window
	subs          int // subscribers on its stream listener
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
	r, err := loadgen.Run(f, pub, loadgen.RunConfig{Warmup: env.warmup, Duration: env.duration, Servers: processes(procs)})
	res := runResult{Result: r}
	for i, u := range r.Servers {
		res.procs = append(res.procs, procStat{Usage: u, subs: subs[i]})
	}
	return res, err
}
