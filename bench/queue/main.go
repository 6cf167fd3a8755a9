// Command queue measures a named queue end to end: enqueue a job through
// the engine (engine::queue::enqueue), the queue module takes it from
// JetStream, runs the handler and acks it; one operation ends when the
// handler has run. The baseline, in the same run on the same embedded
// nats-server, is bare JetStream doing the same I/O: publish to a
// work-queue stream (file storage, awaiting the publish ack) and a durable
// pull consumer with explicit acks whose callback runs the handler and acks.
// Only ratios within one run mean anything.
//
//	go run ./bench/queue [-duration 5s] [-concurrency 1,64] [-payload 64]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/queuemodule"
)

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measurement time per scenario")
	warmup := flag.Duration("warmup", time.Second, "warm-up time per scenario")
	size := flag.Int("payload", 64, "payload size in bytes")
	levels := flag.String("concurrency", "1,64", "comma-separated jobs in flight")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the trine scenarios")
	flag.Parse()
	conc, err := loadgen.ParseLevels(*levels)
	if err != nil {
		log.Fatal(err)
	}
	maxConc := 1
	for _, c := range conc {
		maxConc = max(maxConc, c)
	}
	dir, err := os.MkdirTemp("", "bench-queue")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server not ready")
	}
	defer ns.Shutdown()
	pad := strings.Repeat("x", max(0, *size-20))

	w := newWaiters()
	bare := startBare(ns, maxConc, w)
	defer bare.stop()
	viaBare := func(ctx context.Context) error {
		id, done := w.add()
		p, _ := json.Marshal(job{ID: id, Pad: pad})
		if _, err := bare.js.Publish(ctx, "bench.jobs", p); err != nil {
			return err
		}
		return w.wait(ctx, id, done)
	}

	e, stopEngine := startEngine(ns, maxConc, w)
	defer stopEngine()
	viaTrine := func(ctx context.Context) error {
		id, done := w.add()
		p, _ := json.Marshal(queuemodule.EnqueueInput{Queue: "bench", FunctionID: "bench::job", Payload: mustJSON(job{ID: id, Pad: pad})})
		if _, err := e.Trigger(ctx, engine.Call{FunctionID: queuemodule.FnEnqueue, Payload: p}); err != nil {
			return err
		}
		return w.wait(ctx, id, done)
	}

	fmt.Printf("payload %d bytes, %v per scenario, file storage, GOMAXPROCS %d\n\n", len(mustJSON(job{Pad: pad})), *duration, procs())
	fmt.Printf("%-14s %5s %12s %10s %10s\n", "scenario", "jobs", "jobs/s", "p50", "p99")
	results, err := loadgen.RunLevels(context.Background(), conc, []loadgen.Scenario{
		{Name: "bare-jetstream", Call: viaBare}, {Name: "trine-queue", Call: viaTrine, Profile: true},
	}, *warmup, *duration, *cpuprofile, row)
	if err != nil {
		log.Fatalf("job failed: %v", err)
	}
	fmt.Println()
	for i, c := range conc {
		r := struct{ bare, trine loadgen.Measurement }{results[i][0], results[i][1]}
		ratio := r.trine.PerSec / r.bare.PerSec
		fmt.Printf("jobs in flight %-3d throughput trine/bare = %.2f %s   p50 trine/bare = %.2f   p99 trine/bare = %.2f\n", c, ratio,
			loadgen.Verdict(ratio >= 0.5), loadgen.Ratio(r.trine.P50, r.bare.P50), loadgen.Ratio(r.trine.P99, r.bare.P99))
	}
	fmt.Println("target: throughput >= 0.50 x bare JetStream at every level")
}

type job struct {
	ID  uint64 `json:"id"`
	Pad string `json:"pad"`
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	return b
}

// waiters lets an operation wait until the handler has run its job.
type waiters struct {
	next atomic.Uint64
	mu   sync.Mutex
	m    map[uint64]chan struct{}
}

func newWaiters() *waiters { return &waiters{m: make(map[uint64]chan struct{})} }

func (w *waiters) add() (uint64, chan struct{}) {
	id := w.next.Add(1)
	ch := make(chan struct{})
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return id, ch
}

func (w *waiters) wait(ctx context.Context, id uint64, ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.m, id)
		w.mu.Unlock()
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("job %d did not run within 30 s", id)
	}
}

// handle is the handler both paths run: it decodes the job and releases
// its waiter.
func (w *waiters) handle(p []byte) {
	var j job
	if err := json.Unmarshal(p, &j); err != nil {
		log.Fatalf("job %s: %v", p, err)
	}
	w.mu.Lock()
	ch := w.m[j.ID]
	delete(w.m, j.ID)
	w.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

type bareJS struct {
	nc *nats.Conn
	js jetstream.JetStream
	cc jetstream.ConsumeContext
}

func (b *bareJS) stop() {
	b.cc.Stop()
	b.nc.Close()
}

func startBare(ns *server.Server, maxAck int, w *waiters) *bareJS {
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		log.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "BENCH", jetstream.ConsumerConfig{Durable: "jobs", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: maxAck})
	if err != nil {
		log.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		go func() { // the handler runs beside the consumer, as the module's do
			w.handle(m.Data())
			_ = m.DoubleAck(ctx)
		}()
	}, jetstream.PullMaxMessages(maxAck))
	if err != nil {
		log.Fatal(err)
	}
	return &bareJS{nc: nc, js: js, cc: cc}
}

func startEngine(ns *server.Server, conc int, w *waiters) (*engine.Engine, func()) {
	e, err := engine.New(engine.Config{DefaultTimeout: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	if err := e.RegisterFunction("bench::job", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		w.handle(c.Payload)
		return nil, nil
	})); err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	m, err := queuemodule.New(queuemodule.Config{Conn: nc, Queues: map[string]queuemodule.QueueConfig{"bench": {Concurrency: conc}}})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Open(ctx); err != nil {
		log.Fatal(err)
	}
	if err := m.Register(e); err != nil {
		log.Fatal(err)
	}
	return e, func() {
		m.Close()
		cancel()
		<-done
		nc.Close()
	}
}

func row(name string, c int, r loadgen.Measurement) {
	fmt.Printf("%-14s %5d %12.0f %10v %10v\n", name, c, r.PerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
}
