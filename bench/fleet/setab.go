package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// The A/B part (-set-ab OLD,NEW): stream::set writes/s of two prebuilt
// trine binaries, measured alternately in one run (OLD, NEW, OLD, NEW, …,
// -set-rounds times each), so that both see the same machine, on each
// store of -set-ab-nodes (0: the memory store; N: JetStream on N NATS
// nodes, N replicas). Build them with `go build -o DIR/old ./cmd/trine` at
// each commit.

// runSetAB measures bins alternately and prints every round and the
// median of each binary per shape, with NEW/OLD: writes/s, and the
// engine's CPU time per write, which depends less on what else the
// machine runs.
func runSetAB(env *setEnv, bins []string, rounds int, nodes []int) error {
	var shapes []setShape
	var configs []setConfig
	for _, n := range nodes {
		c := setConfig{name: "memory", nodes: n, engines: 1}
		if n > 0 {
			c.name = fmt.Sprintf("jetstream %d node", n)
		}
		configs = append(configs, c)
		for _, s := range []setShape{{"1 group", 1}, {fmt.Sprintf("%d groups", env.groups), env.groups}} {
			s.name = c.name + ", " + s.name
			shapes = append(shapes, s)
		}
	}
	fmt.Printf("stream::set A/B: %d concurrent callers, %v per shape after %v warm-up, %d rounds, binaries alternating\n",
		env.callers, env.duration, env.warmup, rounds)
	perSec := make([]map[string][]float64, len(bins))
	cpu := make([]map[string][]float64, len(bins)) // engine µs per write
	for i := range bins {
		perSec[i], cpu[i] = map[string][]float64{}, map[string][]float64{}
	}
	var errs []error
	for round := range rounds {
		for i, bin := range bins {
			e := *env
			e.trineBin = bin
			var rs []setResult
			for j, c := range configs {
				bare := slices.Clone(shapes[2*j : 2*j+2])
				for k := range bare {
					bare[k].name = strings.TrimPrefix(bare[k].name, c.name+", ")
				}
				r, err := runSetConfig(&e, c, bare)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", bin, err))
				}
				for k := range r {
					r[k].shape = c.name + ", " + r[k].shape
				}
				rs = append(rs, r...)
			}
			for _, r := range rs {
				if r.err != nil {
					errs = append(errs, fmt.Errorf("%s, %s: %w", bin, r.shape, r.err))
					continue
				}
				perSec[i][r.shape] = append(perSec[i][r.shape], r.perSec())
				cpu[i][r.shape] = append(cpu[i][r.shape], loadgen.Micros(r.cpuPerWrite()))
				loadgen.Progress("round %d %s, %s: %s writes/s, engine %.0f µs/write, sequences %s", round+1, bin, r.shape, loadgen.Human(r.perSec()), loadgen.Micros(r.cpuPerWrite()), r.seqs)
			}
		}
	}
	fmt.Println()
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "binary\tshape\tmedian writes/s\tevery round\tmedian engine µs/write\tevery round\t")
	for i, bin := range bins {
		for _, s := range shapes {
			var each, eachCPU []string
			for j, v := range perSec[i][s.name] {
				each = append(each, loadgen.Human(v))
				eachCPU = append(eachCPU, fmt.Sprintf("%.0f", cpu[i][s.name][j]))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t\n", bin, s.name, loadgen.Human(median(perSec[i][s.name])), strings.Join(each, " "),
				median(cpu[i][s.name]), strings.Join(eachCPU, " "))
		}
	}
	tw.Flush()
	if len(bins) == 2 {
		for _, s := range shapes {
			if old, newCPU := median(perSec[0][s.name]), median(cpu[1][s.name]); old > 0 && newCPU > 0 {
				fmt.Printf("%s: writes/s NEW/OLD %.2f×, engine CPU per write OLD/NEW %.2f×\n", s.name, median(perSec[1][s.name])/old, median(cpu[0][s.name])/newCPU)
			}
		}
	}
	return errors.Join(errs...)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
