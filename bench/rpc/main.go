// Command rpc measures a full trigger round trip (caller SDK -> engine ->
// worker SDK -> back) over real gRPC on loopback, against a bare grpc-go
// unary echo doing the same I/O, in one run. Only ratios within one run mean
// anything: the load generator shares the CPU with the engine.
//
//	go run ./bench/rpc [-duration 5s] [-concurrency 1,64] [-payload 64] [-cpuprofile f]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
	trine "github.com/trinehq/trine/worker-sdk"
)

type result struct {
	calls    int
	perSec   float64
	p50, p99 time.Duration
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := flag.Duration("warmup", time.Second, "warm-up time per scenario")
	size := flag.Int("payload", 64, "payload size in bytes")
	levels := flag.String("concurrency", "1,64", "comma-separated caller counts")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the trine scenarios")
	flag.Parse()

	payload, _ := json.Marshal(strings.Repeat("x", max(0, *size-2)))
	var conc []int
	for _, s := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bad -concurrency %q", *levels)
		}
		conc = append(conc, n)
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
	if err := callee.RegisterFunction("bench::echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
		log.Fatal(err)
	}
	raw := json.RawMessage(payload)
	viaTrine := func(ctx context.Context) error {
		_, err := caller.Trigger(ctx, "bench::echo", raw)
		return err
	}

	fmt.Printf("payload %d bytes, %v per scenario, GOMAXPROCS %d\n\n", len(payload), *duration, runtimeProcs())
	fmt.Printf("%-10s %5s %12s %10s %10s\n", "scenario", "conc", "calls/s", "p50", "p99")
	type pair struct{ bare, trine result }
	results := map[int]pair{}
	for _, c := range conc {
		b := measure(bare, c, *warmup, *duration)
		print("bare-grpc", c, b)
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				log.Fatal(err)
			}
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		tr := measure(viaTrine, c, *warmup, *duration)
		if *cpuprofile != "" {
			pprof.StopCPUProfile()
			*cpuprofile = "" // profile the first level only
		}
		print("trine", c, tr)
		results[c] = pair{b, tr}
	}
	fmt.Println()
	for _, c := range conc {
		r := results[c]
		fmt.Printf("conc %-3d throughput trine/bare = %.2f   p50 trine/bare = %.2f\n", c, r.trine.perSec/r.bare.perSec, float64(r.trine.p50)/float64(r.bare.p50))
	}
	if r, ok := results[64]; ok {
		ratio := r.trine.perSec / r.bare.perSec
		fmt.Printf("target: throughput at 64 callers >= 0.40 x bare: %.2f %s\n", ratio, verdict(ratio >= 0.4))
	}
	if r, ok := results[1]; ok {
		ratio := float64(r.trine.p50) / float64(r.bare.p50)
		fmt.Printf("target: p50 at 1 caller <= 2.5 x bare: %.2f %s\n", ratio, verdict(ratio <= 2.5))
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func print(name string, c int, r result) {
	fmt.Printf("%-10s %5d %12.0f %10v %10v\n", name, c, r.perSec, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
}

// measure runs call from c goroutines: first for warmup, then for d while
// recording each call's latency.
func measure(call func(context.Context) error, c int, warmup, d time.Duration) result {
	run := func(d time.Duration, record bool) ([]time.Duration, time.Duration) {
		var stop atomic.Bool
		lat := make([][]time.Duration, c)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range c {
			wg.Go(func() {
				ls := make([]time.Duration, 0, 1<<16)
				ctx := context.Background()
				for !stop.Load() {
					t0 := time.Now()
					if err := call(ctx); err != nil {
						log.Fatalf("call failed: %v", err)
					}
					if record {
						ls = append(ls, time.Since(t0))
					}
				}
				lat[i] = ls
			})
		}
		timer := time.NewTimer(d)
		<-timer.C
		stop.Store(true)
		wg.Wait()
		return slices.Concat(lat...), time.Since(start)
	}
	run(warmup, false)
	all, el := run(d, true)
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return result{calls: len(all), perSec: float64(len(all)) / el.Seconds(), p50: q(0.50), p99: q(0.99)}
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
