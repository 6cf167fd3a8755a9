package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/console"
	"github.com/trinehq/trine/cronmodule"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/engine/natsroute"
	"github.com/trinehq/trine/engine/prommetrics"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/httpinvoke"
	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/pubsubmodule"
	"github.com/trinehq/trine/streammodule/store"
)

// Once the engine has drained, the gRPC server gets this long to finish its
// RPCs before it is stopped hard, and the HTTP server as long to shut down.
const (
	grpcStopTimeout = 5 * time.Second
	httpStopTimeout = 5 * time.Second
)

// runEngine is `trine engine`.
func runEngine(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, err := parseEngineConfig(args, lookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		engineUsage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "trine engine: %v (see trine engine --help)\n", err)
		return 2
	}
	if err := serveEngine(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "trine: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, cfg engineConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveEngine runs the engine until ctx ends, then shuts it down in order:
// the engine drains its calls and closes worker sessions, then the gRPC
// server stops, then the HTTP server.
func serveEngine(ctx context.Context, cfg engineConfig, stdout, stderr io.Writer) error {
	log := newLogger(stderr, cfg)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// Listen on both ports before starting anything, so that a taken port
	// is a plain error with nothing to undo.
	grpcLis, err := listen(ctx, "grpc", "--grpc-addr", cfg.GRPCAddr)
	if err != nil {
		return err
	}
	defer grpcLis.Close()
	httpLis, err := listen(ctx, "http", "--http-addr", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer httpLis.Close()
	streamLis, err := listen(ctx, "stream", "--stream-addr", cfg.StreamAddr)
	if err != nil {
		return err
	}
	defer streamLis.Close()
	var iiiLis net.Listener
	if cfg.IIIAddr != "off" {
		if iiiLis, err = listen(ctx, "iii", "--iii-addr", cfg.IIIAddr); err != nil {
			return err
		}
		defer iiiLis.Close()
	}
	extra, err := openListeners(ctx, cfg)
	if err != nil {
		return err
	}
	for _, l := range extra {
		defer l.lis.Close()
	}

	// With TLS, every listener speaks it; the worker listeners (gRPC,
	// iii) also verify client certificates when --tls-client-ca is set.
	var grpcOpts []grpc.ServerOption
	var workersTLS *tlsconf.Server
	reload := []reloadable{}
	for _, l := range extra {
		if l.tokens != nil {
			reload = append(reload, reloadable{"tokens file " + l.tokensFile, l.tokens.Reload})
		}
	}
	consoleToks, err := consoleTokens(cfg)
	if err != nil {
		return err
	}
	if consoleToks != nil {
		reload = append(reload, reloadable{"console tokens file " + cfg.ConsoleTokensFile, consoleToks.Reload})
	}
	if cfg.TLS.Enabled() {
		web, err := tlsconf.NewServer(cfg.TLS, false)
		if err != nil {
			return err
		}
		workers, err := tlsconf.NewServer(cfg.TLS, true)
		if err != nil {
			return err
		}
		httpLis, streamLis = web.Listen(httpLis), web.Listen(streamLis)
		if iiiLis != nil {
			iiiLis = workers.Listen(iiiLis)
		}
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(workers.Config("h2"))))
		workersTLS = workers
		reload = append(reload, reloadable{"TLS files", func() error {
			if err := web.Reload(); err != nil {
				return err
			}
			return workers.Reload()
		}})
	}
	defer reloadOnHangup(log, reload...)()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := prommetrics.New(reg)
	if err != nil {
		return fmt.Errorf("create metrics: %w", err)
	}
	ns, err := connectNATS(cfg, log)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trine_nats_connected", Help: "1 while the engine's NATS connection is up, 0 otherwise."},
		func() float64 {
			if ns.Conn.IsConnected() {
				return 1
			}
			return 0
		})); err != nil {
		return fmt.Errorf("register nats metrics: %w", err)
	}
	stopAnnounce, err := announceStore(ns.Conn, cfg.Store, grpcLis.Addr().String(), cfg.NATSURL != "", log)
	if err != nil {
		return err
	}
	defer stopAnnounce()
	router := natsroute.New(ns.Conn, log)
	eng, err := engine.New(engine.Config{
		DefaultTimeout:       cfg.DefaultTimeout,
		ShutdownGrace:        cfg.ShutdownGrace,
		Version:              version,
		Logger:               log,
		Observer:             metrics,
		Remote:               router,
		MaxTriggersPerWorker: cfg.MaxTriggersPerWorker,
		MaxTriggers:          cfg.MaxTriggers,
		TriggerFireRate:      cfg.TriggerFireRate,

		MaxFunctionsPerWorker:         cfg.MaxFunctionsPerWorker,
		MaxFunctions:                  cfg.MaxFunctions,
		MaxRegistrationBytesPerWorker: cfg.MaxRegistrationBytesPerWorker,
		MaxRegistrationBytes:          cfg.MaxRegistrationBytes,
		MaxListBytes:                  min(cfg.MaxListBytes, cfg.MaxMessageBytes),
	})
	if err != nil {
		return fmt.Errorf("create engine: %w", err)
	}
	if err := router.Start(eng); err != nil {
		return fmt.Errorf("start routing between engines: %w", err)
	}
	defer router.Close()
	if err := prommetrics.RegisterEngine(reg, eng); err != nil {
		return fmt.Errorf("register engine metrics: %w", err)
	}
	// One bound on list answers for stream::* and state::*.
	lists := store.NewLists(listBytes(cfg), cfg.MaxListBytesTotal)
	streams, err := startStreams(cfg, eng, ns, lists, log)
	if err != nil {
		return err
	}
	defer streams.close()
	st, err := startState(cfg, eng, ns, lists, log)
	if err != nil {
		return err
	}
	defer st.close()
	ps := pubsubmodule.New(pubsubmodule.Config{Conn: ns.Conn, CallTimeout: cfg.DefaultTimeout, Logger: log})
	defer ps.Close()
	if err := ps.Register(eng); err != nil {
		return fmt.Errorf("register pubsub: %w", err)
	}
	crons := cronmodule.New(cronmodule.Config{Claims: cronmodule.Waiting{Err: errCronWaiting}, CallTimeout: cfg.DefaultTimeout,
		MaxListBytes: listBytes(cfg), Logger: log})
	defer crons.Close()
	if err := crons.Register(eng); err != nil {
		return fmt.Errorf("register cron: %w", err)
	}
	queues, err := startQueues(cfg, eng, ns, log)
	if err != nil {
		return err
	}
	defer queues.Close()
	// Cron and queues need JetStream; the engine never waits for it.
	optional := jsboot.NewStarter(log, cronPart(cfg, ns, crons), jsboot.Part{Name: "queues", Open: queues.Open}, streams.presencePart)
	if err := registerGatewayMetrics(reg, streams.gw); err != nil {
		return fmt.Errorf("register stream metrics: %w", err)
	}
	hcc := cfg.Channels.hubConfig()
	hcc.AllowedOrigins, hcc.AllowedHosts, hcc.Logger = cfg.AllowedOrigins, cfg.AllowedHosts, log
	hub := channels.New(hcc)
	defer hub.Close()
	if err := hub.Register(eng); err != nil {
		return fmt.Errorf("register channels: %w", err)
	}
	hcfg := httptrigger.Config{MaxBodyBytes: cfg.HTTPMaxBodyBytes, MaxStreamBodyBytes: cfg.HTTPMaxStreamBody, Timeout: cfg.HTTPTimeout,
		Reserved: []string{"/healthz", "/readyz", "/metrics", console.Path}, Logger: log}
	if cfg.HTTPStreaming {
		hcfg.Channels = hub
	}
	routes := httptrigger.New(eng, hcfg)
	if err := routes.Register(); err != nil {
		return fmt.Errorf("register http triggers: %w", err)
	}
	grpcCfg := grpcserver.Config{MaxMessageBytes: cfg.MaxMessageBytes, Logger: log}
	gs := grpcserver.New(eng, grpcCfg).NewGRPCServer(grpcOpts...)
	hs := &http.Server{
		Handler: cfg.HTTPCORS.wrap(httpHandler(eng, optional.States, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), routes,
			consoleHandler(cfg, httpLis, streamLis, iiiLis, consoleToks, streams.tokens))),
		ReadHeaderTimeout: 10 * time.Second,
		// http triggers bound their functions with --http-timeout; this
		// bounds writing the answer too.
		WriteTimeout: cfg.HTTPTimeout + 10*time.Second,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	invoker := httpInvoker(cfg, os.LookupEnv, ns.Addr(), grpcLis, httpLis, streamLis, iiiLis, extra)
	defer invoker.Close()
	iiiCfg := iiiserver.Config{MaxMessageBytes: int64(cfg.MaxMessageBytes), NamespaceGrace: cfg.IIINamespaceGrace,
		Channels: hub, AllowedOrigins: cfg.AllowedOrigins, AllowedHosts: cfg.AllowedHosts, HTTPInvoker: invoker, Logger: log}
	for i := range extra {
		extra[i].build(eng, cfg.Listeners[i], iiiCfg, grpcCfg, grpcOpts, workersTLS, log)
	}
	iiiCfg.Access = iiiAccess(cfg)
	iii := iiiserver.New(eng, iiiCfg)
	iiiHTTP := &http.Server{
		Handler:           iii,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return eng.Run(gctx) })
	g.Go(func() error { return optional.Run(gctx) })
	// With JetStream at hand the optional parts are up after their first
	// attempt, which is bounded (jsboot.FirstAttempt): workers that connect
	// at once find them. Without it, they come up later.
	<-optional.Settled()
	g.Go(func() error {
		if err := gs.Serve(grpcLis); err != nil {
			return fmt.Errorf("serve grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := hs.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	if iiiLis != nil {
		g.Go(func() error {
			if err := iiiHTTP.Serve(iiiLis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve iii: %w", err)
			}
			return nil
		})
	}
	for _, l := range extra {
		g.Go(l.serve)
	}
	g.Go(func() error {
		if err := streams.http.Serve(streamLis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve stream: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		// Other engines stop sending calls here while this one drains,
		// and the queues stop handing it jobs.
		go router.Close()
		queues.Stop()
		<-eng.Done() // calls drained or cut, worker sessions closed
		force := time.AfterFunc(grpcStopTimeout, func() {
			log.Warn("gRPC server did not stop in time; closing its connections")
			gs.Stop()
		})
		gs.GracefulStop()
		force.Stop()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpStopTimeout)
		defer cancel()
		streams.shutdown(sctx)
		// Worker sessions are closed by now; Close ends their sockets
		// (and open channels), which Shutdown does not track.
		iii.Close()
		for _, l := range extra {
			l.stop(sctx)
		}
		hub.Close()
		for _, srv := range []*http.Server{hs, iiiHTTP} {
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
		}
		return nil
	})
	natsInfo := "nats=" + natsembed.Redact(cfg.NATSURL)
	if cfg.NATSURL == "" {
		natsInfo = "nats=embedded"
		if a := ns.Addr(); a != "" {
			natsInfo += "," + a
		}
		if cfg.NATSTokenGenerated {
			natsInfo += " nats-token=" + cfg.NATSToken
		}
	}
	iiiInfo := "off"
	if iiiLis != nil {
		iiiInfo = iiiLis.Addr().String()
	}
	fmt.Fprintf(stdout, "trine engine %s listening: grpc=%s http=%s stream=%s iii=%s %s%s%s\n", version, grpcLis.Addr(), httpLis.Addr(), streamLis.Addr(), iiiInfo, natsInfo, tlsInfo(cfg.TLS), listenerInfo(extra))
	log.Info("engine started", "version", version, "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(),
		"stream", streamLis.Addr().String(), "iii", iiiInfo, "store", cfg.Store, "data_dir", cfg.DataDir, "config", cfg.ConfigFile)
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("engine exited")
	return nil
}

// tlsInfo is the start line's note on TLS.
func tlsInfo(f tlsconf.Files) string {
	switch {
	case f.ClientCA != "":
		return " tls=on,mtls=workers"
	case f.Enabled():
		return " tls=on"
	}
	return ""
}

// reloadable is something SIGHUP reloads: TLS files, a tokens file.
type reloadable struct {
	what   string
	reload func() error
}

// reloadOnHangup reloads everything in rs on every SIGHUP until the
// returned function is called. A file that fails to load is logged and
// the one in use stays. With nothing to reload SIGHUP is only logged (it
// would otherwise end the process).
func reloadOnHangup(log *slog.Logger, rs ...reloadable) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ch:
			case <-done:
				return
			}
			if len(rs) == 0 {
				log.Info("SIGHUP: nothing to reload")
			}
			for _, r := range rs {
				if err := r.reload(); err != nil {
					log.Error("SIGHUP: "+r.what+" not reloaded; the ones in use stay", "error", err)
				} else {
					log.Info("SIGHUP: " + r.what + " reloaded")
				}
			}
		}
	})
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}

// listen opens a TCP listener for the address that setting gives. Its
// error names the setting to change: "listen grpc 127.0.0.1:49134:
// address already in use; change --grpc-addr".
func listen(ctx context.Context, name, setting, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		var se *os.SyscallError
		var oe *net.OpError
		switch {
		case errors.As(err, &se):
			err = se.Err
		case errors.As(err, &oe):
			err = oe.Err
		}
		return nil, fmt.Errorf("listen %s %s: %w; change %s", name, addr, err, setting)
	}
	return l, nil
}

// errCronWaiting is why cron fires are skipped until cron's JetStream
// stream is open.
var errCronWaiting = errors.New("cron waits for JetStream, which the engine's NATS does not offer yet (GET /readyz shows when it is up)")

// cronPart opens the JetStream stream that makes each cron fire run once
// per fleet. Until then cron triggers are accepted and their fires
// skipped; if JetStream refuses the stream, they are refused, saying why.
func cronPart(cfg engineConfig, ns *natsembed.Server, crons *cronmodule.Module) jsboot.Part {
	return jsboot.Part{Name: "cron", Open: func(ctx context.Context) error {
		c, err := cronmodule.OpenJetStreamClaims(ctx, ns.Conn, cfg.StoreReplicas)
		if err != nil {
			if !jsboot.Transient(err) {
				crons.SetClaims(cronmodule.Unavailable{Err: err})
			}
			return err
		}
		crons.SetClaims(c)
		return nil
	}}
}

// httpInvoker is the client of HTTP-invoked functions, kept off the
// engine's own listeners, its embedded NATS server's included (natsAddr,
// the address it is bound to: the port the OS chose for --nats-addr
// HOST:0).
func httpInvoker(cfg engineConfig, lookupEnv func(string) (string, bool), natsAddr string, lis ...any) *httpinvoke.Invoker {
	var own []netip.AddrPort
	add := func(l net.Listener) {
		if l == nil {
			return
		}
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil {
			own = append(own, ap)
		}
	}
	for _, l := range lis {
		switch l := l.(type) {
		case net.Listener:
			add(l)
		case []extraListener:
			for _, x := range l {
				add(x.lis)
			}
		}
	}
	if a, err := netip.ParseAddrPort(natsAddr); err == nil {
		own = append(own, a)
	}
	return httpinvoke.New(httpinvoke.Config{AllowedHosts: cfg.HTTPInvoke.Hosts, AllowHTTP: cfg.HTTPInvoke.AllowHTTP,
		AllowPrivate: cfg.HTTPInvoke.AllowPrivate, Env: cfg.HTTPInvoke.Env, LookupEnv: lookupEnv, Own: own,
		MaxResponseBytes: int64(cfg.MaxMessageBytes), MaxTimeout: cfg.DefaultTimeout, MaxInFlight: cfg.HTTPInvoke.MaxInFlight})
}

// listBytes is --max-list-bytes lowered so that a list answer fits a
// message of --max-message-bytes.
func listBytes(cfg engineConfig) int {
	return max(1, min(cfg.MaxListBytes, cfg.MaxMessageBytes-resultHeadroom))
}
