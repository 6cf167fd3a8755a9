package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/engine/prommetrics"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
)

// serveTrineProfiled (-serve trine -cpuprofile FILE) runs what `trine
// engine --store memory` runs — the engine with its metrics observer, the
// gRPC server, the StreamModule on a memory store, embedded NATS and the
// gateway — in this binary, and writes a CPU profile of its whole life to
// FILE. It prints the engine's listening line, so the bench drives it
// exactly like the real binary; the profile is the only difference.
func serveTrineProfiled(profile string, queue int) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "fanout trine:", err)
		return 1
	}
	pf, err := os.Create(profile)
	if err != nil {
		return fail(err)
	}
	defer pf.Close()
	if err := pprof.StartCPUProfile(pf); err != nil {
		return fail(err)
	}
	defer pprof.StopCPUProfile()

	reg := prometheus.NewRegistry()
	metrics, err := prommetrics.New(reg)
	if err != nil {
		return fail(err)
	}
	eng, err := engine.New(engine.Config{Observer: metrics})
	if err != nil {
		return fail(err)
	}
	// The engine's embedded NATS server, in-process only (as with
	// --nats-addr off), started here rather than through internal/natsembed
	// so that this mode does not follow that package's API.
	ns, err := natsserver.NewServer(&natsserver.Options{ServerName: "bench-fanout", DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		return fail(err)
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fail(fmt.Errorf("nats did not start"))
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("bench-fanout"), nats.MaxReconnects(-1))
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	mod, err := streammodule.New(streammodule.Config{
		OpenStore: func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil },
		Publisher: natsfanout.NewPublisher(nc),
	})
	if err != nil {
		return fail(err)
	}
	defer mod.Close()
	if err := mod.Register(eng); err != nil {
		return fail(err)
	}
	stats := new(ingestStats)
	defer stats.writeFile(profile + ".ingest")
	events := timedEvents{natsfanout.NewSubscriber(nc), stats}
	gw, err := gateway.New(gateway.Config{Backend: mod, Events: events, Caller: eng, QueueMessages: queue})
	if err != nil {
		return fail(err)
	}
	defer gw.Close()

	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	streamLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	gs := grpcserver.New(eng, grpcserver.Config{}).NewGRPCServer()
	hs := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { // the bench is gone
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	go func() { _ = eng.Run(ctx) }()
	go func() { _ = gs.Serve(grpcLis) }()
	go func() { _ = hs.Serve(streamLis) }()
	go heapOnSignal(ctx, profile)
	fmt.Printf("trine engine bench-profiled listening: grpc=%s http=none stream=%s\n", grpcLis.Addr(), streamLis.Addr())
	<-ctx.Done()
	gs.Stop()
	_ = hs.Close()
	return 0
}

// heapOnSignal writes, on each SIGUSR1, a heap profile to profile.heap
// and the runtime's memory figures to profile.mem: what the idle-memory
// measurement holds per socket.
func heapOnSignal(ctx context.Context, profile string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	defer signal.Stop(sig)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		runtime.GC()
		if f, err := os.Create(profile + ".heap"); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			_ = f.Close()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		txt := fmt.Sprintf("goroutines %d\nheap in use %d\nheap objects %d\nstacks in use %d\nsys %d\n",
			runtime.NumGoroutine(), m.HeapInuse, m.HeapObjects, m.StackInuse, m.Sys)
		_ = os.WriteFile(profile+".mem", []byte(txt), 0o644)
		fmt.Println("heap written")
	}
}

// timedEvents records, for each event the gateway receives, when it starts
// and ends handing it to the group's connections.
type timedEvents struct {
	gateway.Events
	stats *ingestStats
}

func (t timedEvents) Subscribe(stream, group string, h func(frame []byte)) (func(), error) {
	return t.Events.Subscribe(stream, group, func(frame []byte) {
		_, ts, ok := loadgen.ParseFrame(frame)
		var began int64
		if ok {
			began = t.stats.begin(ts)
		}
		h(frame)
		if ok {
			t.stats.done(began)
		}
	})
}
