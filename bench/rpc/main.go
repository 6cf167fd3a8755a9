// Command rpc measures a full trigger round trip (caller SDK -> engine ->
// worker SDK -> back) over real gRPC on loopback, against a bare grpc-go
// unary echo doing the same I/O, in one run. Only ratios within one run mean
// anything: the load generator shares the CPU with the engine.
//
// With -request-format, the payload is a 10-field object and a third
// scenario, trine+format, calls a function whose request_format (a
// 10-field schema) the engine checks on every call: the difference from
// trine is the cost of the check.
//
//	go run ./bench/rpc [-duration 5s] [-concurrency 1,64] [-payload 64] [-request-format] [-cpuprofile f]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
	trine "github.com/trinehq/trine/worker-sdk"
)

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := flag.Duration("warmup", time.Second, "warm-up time per scenario")
	size := flag.Int("payload", 64, "payload size in bytes")
	levels := flag.String("concurrency", "1,64", "comma-separated caller counts")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the trine scenarios")
	withFormat := flag.Bool("request-format", false, "also call a function with a 10-field request_format, with a 10-field payload (-payload is ignored)")
	flag.Parse()

	payload, _ := json.Marshal(strings.Repeat("x", max(0, *size-2)))
	if *withFormat {
		payload = []byte(enginetest.TenFieldsValue)
	}
	conc, err := loadgen.ParseLevels(*levels)
	if err != nil {
		log.Fatal(err)
	}

	bareAddr, stopBare := startBare()
	defer stopBare()
	bare := bareCaller(bareAddr, payload)

	engAddr, stopEngine := startEngine()
	defer stopEngine()
	ctx := context.Background()
	callee := trine.RegisterWorker(engAddr, trine.WithName("bench-callee"))
	caller := trine.RegisterWorker(engAddr, trine.WithName("bench-caller"))
	defer callee.Close()
	defer caller.Close()
	for _, w := range []*trine.Worker{callee, caller} {
		if err := w.Connect(ctx); err != nil {
			log.Fatal(err)
		}
	}
	if err := callee.RegisterFunction(ctx, "bench::echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
		log.Fatal(err)
	}
	raw := json.RawMessage(payload)
	viaTrine := func(ctx context.Context) error {
		_, err := caller.Trigger(ctx, "bench::echo", raw)
		return err
	}
	scenarios := []loadgen.Scenario{{Name: "bare-grpc", Call: bare}, {Name: "trine", Call: viaTrine, Profile: true}}
	if *withFormat {
		if err := callee.RegisterFunction(ctx, "bench::typed", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil },
			trine.WithRequestFormat(enginetest.TenFieldsSchema)); err != nil {
			log.Fatal(err)
		}
		scenarios = append(scenarios, loadgen.Scenario{Name: "trine+fmt", Call: func(ctx context.Context) error {
			_, err := caller.Trigger(ctx, "bench::typed", raw)
			return err
		}})
	}

	fmt.Printf("payload %d bytes, %v per scenario, GOMAXPROCS %d\n\n", len(payload), *duration, runtimeProcs())
	fmt.Printf("%-10s %5s %12s %10s %10s\n", "scenario", "conc", "calls/s", "p50", "p99")
	results, err := loadgen.RunLevels(context.Background(), conc, scenarios, *warmup, *duration, *cpuprofile, print)
	if err != nil {
		log.Fatalf("call failed: %v", err)
	}
	type pair struct{ bare, trine loadgen.Measurement }
	byLevel := map[int]pair{}
	for i, c := range conc {
		byLevel[c] = pair{results[i][0], results[i][1]}
	}
	fmt.Println()
	for _, c := range conc {
		r := byLevel[c]
		fmt.Printf("conc %-3d throughput trine/bare = %.2f   p50 trine/bare = %.2f\n", c, r.trine.PerSec/r.bare.PerSec, loadgen.Ratio(r.trine.P50, r.bare.P50))
	}
	if r, ok := byLevel[64]; ok {
		ratio := r.trine.PerSec / r.bare.PerSec
		fmt.Printf("target: throughput at 64 callers >= 0.40 x bare: %.2f %s\n", ratio, loadgen.Verdict(ratio >= 0.4))
	}
	if r, ok := byLevel[1]; ok {
		ratio := loadgen.Ratio(r.trine.P50, r.bare.P50)
		fmt.Printf("target: p50 at 1 caller <= 2.5 x bare: %.2f %s\n", ratio, loadgen.Verdict(ratio <= 2.5))
	}
	if *withFormat {
		fmt.Println()
		for i, c := range conc {
			plain, checked := results[i][1], results[i][2]
			// CPU per call counts the whole process (callers, engine and
			// worker): the difference is what the check adds.
			fmt.Printf("conc %-3d throughput trine+fmt/trine = %.2f   p50 %v -> %v   CPU per call %v -> %v (%+.1f µs)\n", c,
				checked.PerSec/plain.PerSec, plain.P50.Round(time.Microsecond), checked.P50.Round(time.Microsecond),
				plain.CPUPerCall().Round(time.Microsecond/10), checked.CPUPerCall().Round(time.Microsecond/10),
				float64(checked.CPUPerCall()-plain.CPUPerCall())/float64(time.Microsecond))
		}
	}
}

func print(name string, c int, r loadgen.Measurement) {
	fmt.Printf("%-10s %5d %12.0f %10v %10v\n", name, c, r.PerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
}

// echoServer is the baseline: a grpc-go unary echo with the same message
// types as the engine's Trigger RPC.
type echoServer struct {
	trinev1.UnimplementedEngineServiceServer
}

func (echoServer) Trigger(_ context.Context, r *trinev1.TriggerRequest) (*trinev1.TriggerResponse, error) {
	return &trinev1.TriggerResponse{Result: r.GetPayload()}, nil
}

func startBare() (string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	trinev1.RegisterEngineServiceServer(srv, echoServer{})
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), srv.Stop
}

func bareCaller(addr string, payload []byte) func(context.Context) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	c := trinev1.NewEngineServiceClient(cc)
	return func(ctx context.Context) error {
		_, err := c.Trigger(ctx, &trinev1.TriggerRequest{FunctionId: "bench::echo", Payload: payload})
		return err
	}
}

func startEngine() (string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	r, err := enginetest.Serve(lis, engine.Config{}, grpcserver.Config{})
	if err != nil {
		log.Fatal(err)
	}
	return r.Addr, r.Stop
}
