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
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/engine/natsroute"
	"github.com/trinehq/trine/engine/prommetrics"
	"github.com/trinehq/trine/internal/httpinvoke"
	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/internal/tokenfile"
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
	return runServer("engine", err, engineUsage, func() error { return serveEngine(ctx, cfg, stdout, stderr) }, stdout, stderr)
}

// runServer finishes a serving command once its flags are parsed (err):
// help exits 0, a usage error 2, a failure to serve 1.
func runServer(command string, err error, usage func(io.Writer), serve func() error, stdout, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "trine %s: %v (see trine %s --help)\n", command, err, command)
		return 2
	}
	if err := serve(); err != nil {
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
// server stops, then the HTTP server. extra modules, if any, are mounted
// after the built-in ones.
func serveEngine(ctx context.Context, cfg engineConfig, stdout, stderr io.Writer, extra ...engine.Module) error {
	log := newLogger(stderr, cfg)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	traces, err := startTracing(ctx, &cfg.OTel, log)
	if err != nil {
		return err
	}
	defer stopTracing(traces, log) // last: after everything that makes spans
	lis, err := openEngineListeners(ctx, cfg)
	if err != nil {
		return err
	}
	defer lis.close()
	defer reloadOnHangup(log, lis.reload...)()
	core, err := startCore(cfg, lis.grpc.Addr().String(), log)
	if err != nil {
		return err
	}
	defer core.close()
	mods, err := newEngineModules(cfg, core.ns, log)
	if err != nil {
		return err
	}
	mounted, err := core.eng.Mount(append(mods.list(), extra...)...)
	if err != nil {
		return err
	}
	defer mounted.Close()
	srv, err := newEngineServers(cfg, core, mods, lis, log)
	if err != nil {
		return err
	}
	defer srv.close()
	return srv.run(ctx, cfg, core, mounted, lis, stdout, log)
}

// engineListeners are the engine's listeners. They are all opened before
// anything starts, so that a taken port is a plain error with nothing to
// undo. With TLS, every listener speaks it; the worker listeners (gRPC,
// iii) also verify client certificates when --tls-client-ca is set.
type engineListeners struct {
	grpc, http, stream net.Listener
	iii                net.Listener // nil with --iii-addr off
	console            net.Listener // --console-addr, or nil
	extra              []extraListener
	grpcOpts           []grpc.ServerOption
	workersTLS         *tlsconf.Server
	reload             []reloadable     // what SIGHUP reloads
	consoleTokens      *tokenfile.Table // --console-tokens-file, or nil
	counted            []net.Listener   // every listener, as listen made it (counting connections)
}

func openEngineListeners(ctx context.Context, cfg engineConfig) (_ *engineListeners, err error) {
	l := &engineListeners{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.grpc, err = listen(ctx, "grpc", "--grpc-addr", cfg.GRPCAddr); err != nil {
		return nil, err
	}
	if l.http, err = listen(ctx, "http", "--http-addr", cfg.HTTPAddr); err != nil {
		return nil, err
	}
	if l.stream, err = listen(ctx, "stream", "--stream-addr", cfg.StreamAddr); err != nil {
		return nil, err
	}
	if cfg.III.Addr != "off" {
		if l.iii, err = listen(ctx, "iii", "--iii-addr", cfg.III.Addr); err != nil {
			return nil, err
		}
	}
	if cfg.Console.Addr != "" && cfg.Console.Mode != "off" {
		if l.console, err = listen(ctx, "console", "--console-addr", cfg.Console.Addr); err != nil {
			return nil, err
		}
	}
	if l.extra, err = openListeners(ctx, cfg); err != nil {
		return nil, err
	}
	for _, x := range l.extra {
		if x.tokens != nil {
			l.reload = append(l.reload, reloadable{"tokens file " + x.tokensFile, x.tokens.Reload})
		}
	}
	if l.consoleTokens, err = consoleTokens(cfg); err != nil {
		return nil, err
	}
	if l.consoleTokens != nil {
		l.reload = append(l.reload, reloadable{"console tokens file " + cfg.Console.TokensFile, l.consoleTokens.Reload})
	}
	l.counted = l.all() // before TLS hides them
	return l, l.useTLS(cfg.TLS)
}

// useTLS wraps the listeners in TLS when f asks for it.
func (l *engineListeners) useTLS(f tlsconf.Files) error {
	if !f.Enabled() {
		return nil
	}
	web, err := tlsconf.NewServer(f, false)
	if err != nil {
		return err
	}
	workers, err := tlsconf.NewServer(f, true)
	if err != nil {
		return err
	}
	l.http, l.stream = web.Listen(l.http), web.Listen(l.stream)
	if l.console != nil {
		l.console = web.Listen(l.console)
	}
	if l.iii != nil {
		l.iii = workers.Listen(l.iii)
	}
	l.grpcOpts = append(l.grpcOpts, grpc.Creds(credentials.NewTLS(workers.Config("h2"))))
	l.workersTLS = workers
	l.reload = append(l.reload, reloadable{"TLS files", func() error {
		if err := web.Reload(); err != nil {
			return err
		}
		return workers.Reload()
	}})
	return nil
}

// all is every listener.
func (l *engineListeners) all() []net.Listener {
	all := []net.Listener{l.grpc, l.http, l.stream, l.iii, l.console}
	for _, x := range l.extra {
		all = append(all, x.lis)
	}
	return all
}

func (l *engineListeners) close() {
	for _, c := range []net.Listener{l.grpc, l.http, l.stream, l.iii, l.console} {
		if c != nil {
			_ = c.Close()
		}
	}
	for _, x := range l.extra {
		_ = x.lis.Close()
	}
}

// engineCore is the engine with its NATS, its routing to other engines
// and its metrics.
type engineCore struct {
	reg    *prometheus.Registry
	ns     *natsembed.Server
	router *natsroute.Router
	eng    *engine.Engine
	undo   []func() // in reverse order
}

func startCore(cfg engineConfig, grpcAddr string, log *slog.Logger) (_ *engineCore, err error) {
	c := &engineCore{reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := prommetrics.New(c.reg)
	if err != nil {
		return nil, fmt.Errorf("create metrics: %w", err)
	}
	if c.ns, err = connectNATS(cfg, log); err != nil {
		return nil, err
	}
	c.undo = append(c.undo, c.ns.Close)
	if err := c.reg.Register(natsStats(c.ns.Conn)); err != nil {
		return nil, fmt.Errorf("register nats metrics: %w", err)
	}
	stopAnnounce, err := announceStore(c.ns.Conn, cfg.Store.Kind, grpcAddr, cfg.NATS.URL != "", log)
	if err != nil {
		return nil, err
	}
	c.undo = append(c.undo, stopAnnounce)
	c.router = natsroute.New(c.ns.Conn, log).WithTracerProvider(cfg.OTel.provider)
	if c.eng, err = engine.New(engineCoreConfig(cfg, metrics, c.router, log)); err != nil {
		return nil, fmt.Errorf("create engine: %w", err)
	}
	if err := c.router.Start(c.eng); err != nil {
		return nil, fmt.Errorf("start routing between engines: %w", err)
	}
	c.undo = append(c.undo, c.router.Close)
	metrics.Known(c.eng.HasFunction)
	if err := prommetrics.RegisterEngine(c.reg, c.eng); err != nil {
		return nil, fmt.Errorf("register engine metrics: %w", err)
	}
	return c, nil
}

func (c *engineCore) close() {
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
}

// engineCoreConfig is the engine's own configuration, with its listings
// lowered to fit a message.
func engineCoreConfig(cfg engineConfig, metrics engine.Observer, remote engine.Remote, log *slog.Logger) engine.Config {
	c := cfg.Engine
	c.Version, c.Logger, c.Observer, c.Remote, c.TracerProvider = version, log, metrics, remote, cfg.OTel.provider
	c.MaxListBytes = min(c.MaxListBytes, cfg.MaxMessageBytes)
	c.Contracts = contract.NewCompiler(cfg.Contracts.Limits) // function formats, under the --contract-* limits
	return c
}

// engineServers serve the listeners: gRPC and iii workers, HTTP (health,
// metrics, http triggers), browsers, and the extra worker listeners.
type engineServers struct {
	streams    *streams
	hub        *channels.Hub
	optional   *jsboot.Starter
	grpc       *grpc.Server
	http       *http.Server
	iii        *iiiserver.Server
	iiiHTTP    *http.Server
	console    *http.Server // on --console-addr, or nil
	invoker    *httpinvoke.Invoker
	resizeCPUs func(context.Context) error // sizes GOMAXPROCS and the writers again (sizeCPUs)
}

func newEngineServers(cfg engineConfig, core *engineCore, mods *engineModules, lis *engineListeners, log *slog.Logger) (*engineServers, error) {
	eng := core.eng
	streams, err := startStreamGateway(cfg, eng, mods.streams, core.ns, log)
	if err != nil {
		return nil, err
	}
	s := &engineServers{streams: streams, hub: mods.hub}
	// Cron and queues need JetStream; the engine never waits for it.
	s.optional = jsboot.NewStarter(log, append(mods.optionalParts(cfg, core.ns), streams.presencePart)...)
	s.resizeCPUs = sizeCPUs(cfg, log, streams.gw.SetWriters)
	if err := registerGatewayMetrics(core.reg, streams.gw); err != nil {
		s.close()
		return nil, fmt.Errorf("register stream metrics: %w", err)
	}
	grpcCfg := grpcserver.Config{MaxMessageBytes: cfg.MaxMessageBytes, Logger: log}
	mainGRPC := grpcserver.New(eng, grpcCfg)
	s.grpc = mainGRPC.NewGRPCServer(lis.grpcOpts...)
	var onHTTP, consoleH http.Handler
	if lis.console == nil {
		onHTTP = consoleHandler(cfg, lis.http, lis.stream, lis.iii, lis.consoleTokens, streams.tokens, log)
		consoleH = onHTTP
	} else if ch := consoleHandler(cfg, lis.console, lis.stream, lis.iii, lis.consoleTokens, streams.tokens, log); ch != nil {
		consoleH = ch
		s.console = &http.Server{Handler: consoleMux(ch), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	s.http = &http.Server{
		Handler:           cfg.HTTPCORS.wrap(httpHandler(eng, s.optional.States, promhttp.HandlerFor(core.reg, promhttp.HandlerOpts{}), mods.routes, mods.contracts.streams.Handler(streams.gw.Readable, listBytes(cfg)), onHTTP)),
		ReadHeaderTimeout: 10 * time.Second,
		// http triggers bound their functions with --http-timeout; this
		// bounds writing the answer too.
		WriteTimeout: cfg.HTTP.Timeout + 10*time.Second,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.invoker = httpInvoker(cfg, os.LookupEnv, core.ns.Addr(), lis.grpc, lis.http, lis.stream, lis.iii, lis.extra)
	iiiCfg := iiiserver.Config{MaxMessageBytes: int64(cfg.MaxMessageBytes), NamespaceGrace: cfg.III.NamespaceGrace,
		Channels: mods.hub, AllowedOrigins: cfg.AllowedOrigins, AllowedHosts: cfg.AllowedHosts, HTTPInvoker: s.invoker, Logger: log,
		Telemetry: cfg.OTel.telemetry, TelemetryBytesPerSecond: cfg.OTel.ForwardBytesPerSecond}
	for i := range lis.extra {
		lis.extra[i].build(eng, cfg.Listeners[i], iiiCfg, grpcCfg, lis.grpcOpts, lis.workersTLS, log)
	}
	iiiCfg.Access = iiiAccess(cfg)
	s.iii = iiiserver.New(eng, iiiCfg)
	refused := append(gatewayRefusals(streams.gw), refusals{"grpc", mainGRPC.AuthRefusals}, refusals{"iii", s.iii.AuthRefusals}, consoleRefusals(consoleH))
	for _, x := range lis.extra {
		refused = append(refused, x.refusals)
	}
	if err := registerAll(core.reg, moduleStats(mods), listenerStats(lis.counted...), stats{refusalStats(refused)}, telemetryStats(s.iii)); err != nil {
		s.close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	s.iiiHTTP = &http.Server{
		Handler:           s.iii,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// close releases what outlives a failed start or a stop: the HTTP
// invoker and the gateway.
func (s *engineServers) close() {
	if s.invoker != nil {
		s.invoker.Close()
	}
	s.streams.close()
}

// run serves until ctx ends, then stops in order: other engines stop
// sending calls and the modules stop taking work (Drain), the engine
// drains its calls and closes worker sessions, then the servers stop.
func (s *engineServers) run(ctx context.Context, cfg engineConfig, core *engineCore, mods engine.Modules, lis *engineListeners, stdout io.Writer, log *slog.Logger) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return core.eng.Run(gctx) })
	g.Go(func() error { return s.optional.Run(gctx) })
	g.Go(func() error { return releaseIdleMemory(gctx, cfg.MemoryReleaseIdle) })
	g.Go(func() error { return s.resizeCPUs(gctx) })
	// With JetStream at hand the optional parts are up after their first
	// attempt, which is bounded (jsboot.FirstAttempt): workers that connect
	// at once find them. Without it, they come up later.
	<-s.optional.Settled()
	s.serve(g, lis)
	g.Go(func() error {
		<-gctx.Done()
		// Other engines stop sending calls here while this one drains,
		// and the queues stop handing it jobs.
		go core.router.Close()
		mods.Drain(context.WithoutCancel(ctx))
		<-core.eng.Done() // calls drained or cut, worker sessions closed
		s.stop(ctx, lis, log)
		return nil
	})
	printStarted(cfg, core, lis, stdout, log)
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("engine exited")
	return nil
}

// serve starts a server on every listener.
func (s *engineServers) serve(g *errgroup.Group, lis *engineListeners) {
	g.Go(func() error {
		if err := s.grpc.Serve(lis.grpc); err != nil {
			return fmt.Errorf("serve grpc: %w", err)
		}
		return nil
	})
	serveHTTP := func(name string, srv *http.Server, l net.Listener) {
		g.Go(func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", name, err)
			}
			return nil
		})
	}
	serveHTTP("http", s.http, lis.http)
	if s.console != nil {
		serveHTTP("console", s.console, lis.console)
	}
	if lis.iii != nil {
		serveHTTP("iii", s.iiiHTTP, lis.iii)
	}
	for _, l := range lis.extra {
		g.Go(l.serve)
	}
	serveHTTP("stream", s.streams.http, lis.stream)
}

// stop stops the servers once the engine has drained: gRPC gracefully
// (then hard after grpcStopTimeout), browsers, iii workers' sockets, the
// extra listeners, channels, then the HTTP servers.
func (s *engineServers) stop(ctx context.Context, lis *engineListeners, log *slog.Logger) {
	force := time.AfterFunc(grpcStopTimeout, func() {
		log.Warn("gRPC server did not stop in time; closing its connections")
		s.grpc.Stop()
	})
	s.grpc.GracefulStop()
	force.Stop()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpStopTimeout)
	defer cancel()
	s.streams.shutdown(sctx)
	// Worker sessions are closed by now; Close ends their sockets
	// (and open channels), which Shutdown does not track.
	s.iii.Close()
	for _, l := range lis.extra {
		l.stop(sctx)
	}
	_ = s.hub.Close()
	for _, srv := range []*http.Server{s.http, s.iiiHTTP, s.console} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}
}

// printStarted writes the start line and logs it.
func printStarted(cfg engineConfig, core *engineCore, lis *engineListeners, stdout io.Writer, log *slog.Logger) {
	natsInfo := "nats=" + natsembed.Redact(cfg.NATS.URL)
	if cfg.NATS.URL == "" {
		natsInfo = "nats=embedded"
		if a := core.ns.Addr(); a != "" {
			natsInfo += "," + a
		}
		if cfg.NATS.TokenGenerated {
			natsInfo += " nats-token=" + cfg.NATS.Token
		}
	}
	iiiInfo := "off"
	if lis.iii != nil {
		iiiInfo = lis.iii.Addr().String()
	}
	consoleInfo := ""
	if lis.console != nil {
		consoleInfo = " console=" + lis.console.Addr().String()
	}
	fmt.Fprintf(stdout, "trine engine %s listening: grpc=%s http=%s stream=%s iii=%s %s%s%s%s\n", version, lis.grpc.Addr(), lis.http.Addr(), lis.stream.Addr(), iiiInfo, natsInfo, tlsInfo(cfg.TLS), listenerInfo(lis.extra), consoleInfo)
	log.Info("engine started", "version", version, "grpc", lis.grpc.Addr().String(), "http", lis.http.Addr().String(),
		"stream", lis.stream.Addr().String(), "iii", iiiInfo, "store", cfg.Store.Kind, "data_dir", cfg.DataDir, "config", cfg.ConfigFile)
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
	return countConns(name, l), nil
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
	c := cfg.HTTPInvoke
	c.LookupEnv, c.Own = lookupEnv, own
	c.MaxResponseBytes, c.MaxTimeout = int64(cfg.MaxMessageBytes), cfg.Engine.DefaultTimeout
	return httpinvoke.New(c)
}

// listBytes is --max-list-bytes lowered so that a list answer fits a
// message of --max-message-bytes.
func listBytes(cfg engineConfig) int {
	return max(1, min(cfg.Engine.MaxListBytes, cfg.MaxMessageBytes-resultHeadroom))
}
