package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// The A/B part (-set-ab OLD,NEW): memory-store stream::set writes/s of two
// prebuilt trine binaries, measured alternately in one run (OLD, NEW, OLD,
// NEW, …, -set-rounds times each), so that both see the same machine.
// Build them with `go build -o DIR/old ./cmd/trine` at each commit.

// runSetAB measures bins alternately and prints every round and the
// median of each binary per shape, with NEW/OLD.
func runSetAB(env *setEnv, bins []string, rounds int) error {
	shapes := []setShape{{"1 group", 1}, {fmt.Sprintf("%d groups", env.groups), env.groups}}
	fmt.Printf("stream::set A/B, memory store: %d concurrent callers, %v per shape after %v warm-up, %d rounds, binaries alternating\n",
		env.callers, env.duration, env.warmup, rounds)
	perSec := make([]map[string][]float64, len(bins))
	for i := range bins {
		perSec[i] = map[string][]float64{}
	}
	var errs []error
	for round := range rounds {
		for i, bin := range bins {
			e := *env
			e.trineBin = bin
			rs, err := runSetConfig(&e, setConfig{name: "memory", engines: 1}, shapes)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", bin, err))
				continue
			}
			for _, r := range rs {
				if r.err != nil {
					errs = append(errs, fmt.Errorf("%s, %s: %w", bin, r.shape, r.err))
					continue
				}
				perSec[i][r.shape] = append(perSec[i][r.shape], r.perSec())
				loadgen.Progress("round %d %s, %s: %s writes/s, sequences %s", round+1, bin, r.shape, loadgen.Human(r.perSec()), r.seqs)
			}
		}
	}
	fmt.Println()
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "binary\tshape\tmedian writes/s\tevery round\t")
	for i, bin := range bins {
		for _, s := range shapes {
			var each []string
			for _, v := range perSec[i][s.name] {
				each = append(each, loadgen.Human(v))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", bin, s.name, loadgen.Human(median(perSec[i][s.name])), strings.Join(each, " "))
		}
	}
	tw.Flush()
	if len(bins) == 2 {
		for _, s := range shapes {
			if old := median(perSec[0][s.name]); old > 0 {
				fmt.Printf("%s: NEW/OLD %.2f×\n", s.name, median(perSec[1][s.name])/old)
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
