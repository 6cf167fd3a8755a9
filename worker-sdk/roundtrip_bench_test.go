//go:build unix

package trine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	trine "github.com/trinehq/trine/worker-sdk"
)

// BenchmarkTriggerRoundTrip is a full call — caller worker → engine →
// callee worker's echo handler → back — over gRPC on loopback, all in
// this process, one call at a time and 64 at once. Run it with -cpu 1:
// CPU time per call (cpu-µs/op) is then what a loaded machine inflates
// least, as no idle thread spins for work.
//
//	go test -run '^$' -bench TriggerRoundTrip -cpu 1 -count 5 ./worker-sdk
func BenchmarkTriggerRoundTrip(b *testing.B) {
	srv := enginetest.Start(b, engine.Config{}, grpcserver.Config{})
	ctx := context.Background()
	callee := trine.RegisterWorker(srv.Addr, trine.WithName("callee"))
	caller := trine.RegisterWorker(srv.Addr, trine.WithName("caller"))
	defer callee.Close()
	defer caller.Close()
	for _, w := range []*trine.Worker{callee, caller} {
		if err := w.Connect(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if err := callee.RegisterFunction(ctx, "bench::echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"`)
	call := func(b *testing.B) {
		if _, err := caller.Trigger(ctx, "bench::echo", payload); err != nil {
			b.Error(err)
		}
	}
	for _, inFlight := range []int{1, 64} {
		b.Run(map[int]string{1: "1", 64: "64"}[inFlight], func(b *testing.B) {
			b.ReportAllocs()
			cpu := enginetest.SelfCPU()
			if inFlight == 1 {
				for b.Loop() {
					call(b)
				}
			} else {
				b.SetParallelism(inFlight)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						call(b)
					}
				})
			}
			b.ReportMetric(float64(enginetest.SelfCPU()-cpu)/float64(b.N)/float64(time.Microsecond), "cpu-µs/op")
		})
	}
}
