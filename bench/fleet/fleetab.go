package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// The fleet A/B (-fleet-ab OLD,NEW): the single and fleet modes of two
// prebuilt trine binaries, measured alternately in one run (OLD single,
// OLD fleet, NEW single, NEW fleet, …, -fleet-rounds times), so that both
// see the same machine. What counts is each binary's fleet/single
// per-core ratio, and its server CPU per delivery in each mode.

// runFleetAB measures bins alternately and prints every round and the
// median of each binary.
func runFleetAB(env *benchEnv, bins []string, rounds, subscribers, gateways int) error {
	fmt.Printf("fleet A/B: %d subscribers, %d gateways, %v per mode after %v warm-up, %d rounds, binaries alternating\n",
		subscribers, gateways, env.duration, env.warmup, rounds)
	type figs struct{ ratio, single, fleet, singleCPU, fleetCPU []float64 }
	res := make([]figs, len(bins))
	var errs []error
	for round := range rounds {
		for i, bin := range bins {
			e := *env
			e.trineBin = bin
			single, serr := runMode(&e, subscribers, 0)
			fleet, ferr := runMode(&e, subscribers, gateways)
			loadgen.StopAll()
			if err := errors.Join(serr, ferr); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", bin, err))
				continue
			}
			r := fleet.perCore() / single.perCore()
			f := &res[i]
			f.ratio = append(f.ratio, r)
			f.single = append(f.single, single.perCore())
			f.fleet = append(f.fleet, fleet.perCore())
			f.singleCPU = append(f.singleCPU, loadgen.Micros(single.CPUPerDelivery()))
			f.fleetCPU = append(f.fleetCPU, loadgen.Micros(fleet.CPUPerDelivery()))
			loadgen.Progress("round %d %s: single %s dlv/s per core (%.2f µs/dlv), fleet %s (%.2f µs/dlv), fleet/single per core %.2f",
				round+1, bin, loadgen.Human(single.perCore()), loadgen.Micros(single.CPUPerDelivery()),
				loadgen.Human(fleet.perCore()), loadgen.Micros(fleet.CPUPerDelivery()), r)
		}
	}
	fmt.Println()
	tw := loadgen.NewTable()
	fmt.Fprintln(tw, "binary\tmedian fleet/single per core\tevery round\tsingle µs/dlv\tfleet µs/dlv\t")
	for i, bin := range bins {
		var each []string
		for _, v := range res[i].ratio {
			each = append(each, fmt.Sprintf("%.2f", v))
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%.2f\t%.2f\t\n", bin, median(res[i].ratio), strings.Join(each, " "),
			median(res[i].singleCPU), median(res[i].fleetCPU))
	}
	tw.Flush()
	return errors.Join(errs...)
}
