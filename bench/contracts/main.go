// Command contracts measures what a stream contract costs a write:
// stream::set throughput through the SDK and a real engine (gRPC on
// loopback, the StreamModule on the memory store), to a stream without a
// contract and to one whose contract is a 10-field schema, in one run,
// scenarios interleaved. It also times the validation alone. Only ratios
// within one run mean anything: the callers share the CPU with the engine.
//
//	go run ./bench/contracts [-duration 5s] [-concurrency 1,64] [-rounds 2]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
	trine "github.com/trinehq/trine/worker-sdk"
)

// target: with a contract, stream::set keeps this share of the writes/s
// without one, at 64 callers.
const target = 0.85

// schema is the 10-field contract: types, bounds, a format, an enum, a
// pattern, an array, no other properties.
const schema = `{
  "type": "object",
  "properties": {
    "id":       {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
    "title":    {"type": "string", "minLength": 1, "maxLength": 200},
    "done":     {"type": "boolean"},
    "priority": {"type": "integer", "minimum": 0, "maximum": 5},
    "owner":    {"type": "string", "maxLength": 100},
    "tags":     {"type": "array", "items": {"type": "string"}, "maxItems": 16},
    "created":  {"type": "string", "format": "date-time"},
    "status":   {"enum": ["open", "doing", "closed"]},
    "estimate": {"type": "number", "minimum": 0},
    "notes":    {"type": ["string", "null"]}
  },
  "required": ["id", "title", "done", "priority", "created", "status"],
  "additionalProperties": false
}`

// item is a 10-field value the schema accepts.
type item struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Done     bool     `json:"done"`
	Priority int      `json:"priority"`
	Owner    string   `json:"owner"`
	Tags     []string `json:"tags"`
	Created  string   `json:"created"`
	Status   string   `json:"status"`
	Estimate float64  `json:"estimate"`
	Notes    *string  `json:"notes"`
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := flag.Duration("warmup", time.Second, "warm-up time per scenario")
	levels := flag.String("concurrency", "1,64", "comma-separated caller counts")
	rounds := flag.Int("rounds", 2, "times each scenario is measured, interleaved; the best counts")
	groups := flag.Int("groups", 64, "groups the writes spread over")
	flag.Parse()
	conc, err := loadgen.ParseLevels(*levels)
	if err != nil {
		log.Fatal(err)
	}
	notes := "ok"
	v := item{ID: "todo-42", Title: "write the contracts benchmark", Priority: 3, Owner: "ann@example.com", Tags: []string{"bench", "contracts"},
		Created: "2026-12-07T08:00:00Z", Status: "doing", Estimate: 1.5, Notes: &notes}
	value, _ := json.Marshal(v)

	validation := validationCost(value)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	r, err := enginetest.Serve(lis, engine.Config{}, grpcserver.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Stop()
	m, err := streammodule.New(streammodule.Config{OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	if err := m.Register(r.Engine); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	w := trine.RegisterWorker(r.Addr, trine.WithName("bench-contracts"))
	defer w.Close()
	if err := w.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := w.Trigger(ctx, "stream::define", map[string]any{"stream_name": "typed", "version": 1, "item_schema": json.RawMessage(schema)}); err != nil {
		log.Fatal(err)
	}
	set := func(stream string) func(context.Context) error {
		var n atomic.Uint64
		return func(ctx context.Context) error {
			i := n.Add(1)
			in := map[string]any{"stream_name": stream, "group_id": "g" + strconv.Itoa(int(i)%*groups), "item_id": strconv.Itoa(int(i % 1024)), "data": json.RawMessage(value)}
			_, err := w.Trigger(ctx, "stream::set", in)
			return err
		}
	}
	// Refused writes must fail: the contract is in force.
	if err := func() error {
		_, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "typed", "group_id": "g", "item_id": "x", "data": map[string]any{"id": 1}})
		return err
	}(); err == nil {
		log.Fatal("the contract refused nothing")
	}

	fmt.Printf("item %d bytes, 10 fields; %v per scenario, best of %d; GOMAXPROCS %d\n", len(value), *duration, *rounds, runtime.GOMAXPROCS(0))
	fmt.Printf("validation alone, one goroutine: %.1f µs of CPU per write\n\n", loadgen.Micros(validation))
	fmt.Printf("%-12s %5s %12s %10s %10s %14s\n", "scenario", "conc", "writes/s", "p50", "p99", "CPU/write")
	scs := []loadgen.Scenario{{Name: "no contract", Call: set("free")}, {Name: "contract", Call: set("typed")}}
	best := map[int][2]loadgen.Measurement{}
	for range *rounds {
		res, err := loadgen.RunLevels(ctx, conc, scs, *warmup, *duration, "", row)
		if err != nil {
			log.Fatal(err)
		}
		for i, c := range conc {
			b := best[c]
			for j := range 2 {
				if res[i][j].PerSec > b[j].PerSec {
					b[j] = res[i][j]
				}
			}
			best[c] = b
		}
	}
	fmt.Println()
	for _, c := range conc {
		b := best[c]
		fmt.Printf("conc %-3d contract/none writes/s = %.2f   CPU per write %+.1f µs with the contract\n", c, b[1].PerSec/b[0].PerSec,
			loadgen.Micros(b[1].CPUPerCall()-b[0].CPUPerCall()))
	}
	if b, ok := best[64]; ok {
		ratio := b[1].PerSec / b[0].PerSec
		fmt.Printf("target: writes/s at 64 callers with a 10-field contract >= %.2f x without: %.2f %s\n", target, ratio, loadgen.Verdict(ratio >= target))
	}
}

func row(name string, c int, m loadgen.Measurement) {
	fmt.Printf("%-12s %5d %12.0f %10v %10v %11.1f µs\n", name, c, m.PerSec, m.P50.Round(time.Microsecond), m.P99.Round(time.Microsecond), loadgen.Micros(m.CPUPerCall()))
}

// validationCost is the CPU time of the contract package's check of
// value alone, before the engine starts.
func validationCost(value []byte) time.Duration {
	s, err := contract.NewCompiler(contract.Limits{}).Compile([]byte(schema))
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Validate(value); err != nil {
		log.Fatalf("the benchmark's item breaks its schema: %v", err)
	}
	const n = 20000
	cpu := loadgen.SelfCPU()
	for range n {
		_ = s.Validate(value)
	}
	return (loadgen.SelfCPU() - cpu) / n
}
