package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/streammodule/natsfanout"
	trine "github.com/trinehq/trine/worker-sdk"
)

// gatewayCommand is `trine gateway`: the engine's browser-facing settings,
// plus where to find the engine and NATS.
var gatewayCommand = command{name: "trine gateway", settings: gatewaySettings, intro: `Runs a stream gateway in its own process: it serves the browser protocol
(WebSocket, multiplexed socket, SSE) on --stream-addr, takes events from
NATS (--nats-url) for the groups its clients watch, and asks the engine
(--engine) for snapshots, history, auth and join decisions. Run as many as
you need behind a load balancer. SIGINT or SIGTERM closes it (clients get
1001 and resume elsewhere with since).`}

// gatewaySettings are the keys of `trine gateway`, each set into its
// field of c.
func gatewaySettings(c *engineConfig) []setting {
	out := []setting{
		row("engine", "ADDRS", "127.0.0.1:49134", "engine gRPC address, or a comma-separated list tried in turn; grpcs://HOST:PORT connects over TLS", &c.EngineAddr, nonEmpty),
		row("engine-tls-ca", "FILE", "", "PEM CA certificates that verify the engine (implies TLS to every --engine address)", &c.EngineTLS.ClientCA, asIs),
		row("engine-tls-cert", "FILE", "", "client certificate for an engine that requires mTLS", &c.EngineTLS.Cert, asIs),
		row("engine-tls-key", "FILE", "", "PEM private key of --engine-tls-cert", &c.EngineTLS.Key, asIs),
	}
	for _, s := range engineSettings(c) {
		switch s.flag {
		case "http-addr":
			s.def, s.usage = "127.0.0.1:3113", "HTTP listener for /healthz, /readyz and /metrics"
		case "stream-addr":
			// Not the engine's 3112, so that both run on one machine.
			s.def = "127.0.0.1:3114"
		case "nats-url":
			s.def, s.usage = "nats://127.0.0.1:4222", "NATS servers carrying stream events (comma-separated nats:// URLs)"
		case "nats-connect-timeout", "tls-cert", "tls-key", "nats-creds", "nats-nkey", "nats-tls-ca", "nats-tls-cert", "nats-tls-key":
		case "allowed-origins":
			s.usage = "comma-separated browser Origins (scheme://host[:port]) allowed besides same-origin pages and, on a loopback listener, loopback pages (* for any)"
		case "allowed-hosts":
			s.usage = "comma-separated public host names of the gateway: Host values accepted besides loopback ones, and hosts whose pages are same-origin (a loopback listener accepts only loopback hosts and these)"
		case "stream-auth-function", "stream-jwt-hmac-secret-file", "stream-jwt-public-key-file", "stream-jwks-url", "stream-jwt-audience", "stream-jwt-issuer", "stream-max-frame-bytes",
			"stream-queue-messages", "stream-queue-bytes", "stream-max-catchups", "stream-max-catchups-total", "stream-snapshot-page-bytes", "stream-snapshot-coalesce", "stream-contract-streams", "stream-contract-stream-bytes", "stream-ping-interval", "stream-sse-keepalive", "stream-session-posts", "stream-write-timeout",
			"stream-latency-labels", "stream-latency-every", "stream-latency-max",
			"presence-grace", "presence-ttl", "presence-replicas", "presence-max-members", "presence-max-meta-bytes", "presence-max-per-connection", "presence-max-total", "presence-rate-bytes", "presence-max-total-bytes",
			"cpus", "log-level", "log-format", "memory-release-idle", "otel-endpoint", "otel-protocol", "otel-sample-ratio":
		default:
			continue
		}
		out = append(out, s)
	}
	return out
}

func runGateway(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, err := parseConfig(gatewayCommand, args, lookupEnv)
	if err == nil && cfg.NATS.URL == "" {
		err = usageErrorf("--nats-url must not be empty")
	}
	usage := func(w io.Writer) { commandUsage(w, gatewayCommand) }
	return runServer("gateway", err, usage, func() error { return serveGateway(ctx, cfg, stdout, stderr) }, stdout, stderr)
}

// sdkCaller calls engine functions through a worker connection, keeping
// the engine's error codes.
type sdkCaller struct{ w *trine.Worker }

func (s sdkCaller) Trigger(ctx context.Context, c engine.Call) ([]byte, error) {
	out, err := s.w.Trigger(ctx, c.FunctionID, json.RawMessage(c.Payload))
	if err != nil {
		var te *trine.Error
		if errors.As(err, &te) {
			return nil, engine.Errorf(engine.Code(te.Code), "%s", te.Message)
		}
		return nil, err
	}
	return out, nil
}

func serveGateway(ctx context.Context, cfg engineConfig, stdout, stderr io.Writer) error {
	log := newLogger(stderr, cfg)
	traces, err := startTracing(ctx, &cfg.OTel, log)
	if err != nil {
		return err
	}
	defer stopTracing(traces, log) // last: after the gateway's spans
	streamLis, err := listen(ctx, "stream", "--stream-addr", cfg.StreamAddr)
	if err != nil {
		return err
	}
	defer streamLis.Close()
	httpLis, err := listen(ctx, "http", "--http-addr", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer httpLis.Close()
	lis := []net.Listener{streamLis, httpLis} // before TLS hides them
	if cfg.TLS.Enabled() {
		web, err := tlsconf.NewServer(cfg.TLS, false)
		if err != nil {
			return err
		}
		streamLis, httpLis = web.Listen(streamLis), web.Listen(httpLis)
		defer reloadOnHangup(log, reloadable{"TLS files", web.Reload})()
	} else {
		defer reloadOnHangup(log)()
	}
	no, err := natsClientOptions(cfg, "trine-gateway", log)
	if err != nil {
		return err
	}
	ns, err := natsembed.Connect(cfg.NATS.URL, no)
	if err != nil {
		return err
	}
	defer ns.Close()
	w, err := engineWorker(cfg, log)
	if err != nil {
		return err
	}
	defer w.Close()
	caller := sdkCaller{w}
	ready := gatewayReady(ns, w, cfg.EngineAddr)
	gcfg := gatewayConfig(cfg, gateway.RemoteBackend(caller), natsfanout.NewSubscriber(ns.Conn), caller, log)
	gcfg.Ready = ready
	presence, presencePart := presenceStore(cfg, ns)
	gcfg.Presence = presence
	optional := jsboot.NewStarter(log, presencePart)
	tokens, err := browserTokens(cfg, log)
	if err != nil {
		return err
	}
	if tokens != nil {
		defer tokens.Close()
		gcfg.Tokens = tokens
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		return err
	}
	resizeCPUs := sizeCPUs(cfg, log, gw.SetWriters)
	mux, err := gatewayHTTP(gw, ready, natsStats(ns.Conn), engineLinkStats(w), listenerStats(lis...), stats{refusalStats(gatewayRefusals(gw))})
	if err != nil {
		return err
	}
	streamSrv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return optional.Run(gctx) })
	g.Go(func() error { return releaseIdleMemory(gctx, cfg.MemoryReleaseIdle) })
	g.Go(func() error { return resizeCPUs(gctx) })
	for _, s := range []struct {
		srv  *http.Server
		lis  net.Listener
		name string
	}{{streamSrv, streamLis, "stream"}, {httpSrv, httpLis, "http"}} {
		g.Go(func() error {
			if err := s.srv.Serve(s.lis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", s.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		_ = gw.Close()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpStopTimeout)
		defer cancel()
		for _, s := range []*http.Server{streamSrv, httpSrv} {
			if err := s.Shutdown(sctx); err != nil {
				_ = s.Close()
			}
		}
		return nil
	})
	fmt.Fprintf(stdout, "trine gateway %s listening: stream=%s http=%s engine=%s nats=%s%s\n", version, streamLis.Addr(), httpLis.Addr(), cfg.EngineAddr, natsembed.Redact(cfg.NATS.URL), tlsInfo(cfg.TLS))
	log.Info("gateway started", "version", version, "stream", streamLis.Addr().String(), "http", httpLis.Addr().String(),
		"engine", cfg.EngineAddr, "nats", natsembed.Redact(cfg.NATS.URL))
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("gateway exited")
	return nil
}

// engineWorker is the gateway's connection to the engine at --engine.
func engineWorker(cfg engineConfig, log *slog.Logger) (*trine.Worker, error) {
	opts := []trine.Option{trine.WithName("trine-gateway"), trine.WithVersion(version), trine.WithLogger(log)}
	if et := cfg.EngineTLS; et.ClientCA != "" || et.Cert != "" {
		tc, err := tlsconf.Client(et.ClientCA, et.Cert, et.Key)
		if err != nil {
			return nil, err
		}
		opts = append(opts, trine.WithTLS(tc))
	}
	w, err := trine.NewWorker(cfg.EngineAddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--engine: %w", err)
	}
	return w, nil
}

// gatewayHTTP serves the gateway's HTTP listener: /metrics (the
// gateway's metrics and more), /healthz, and /readyz, which ready decides.
func gatewayHTTP(gw *gateway.Gateway, ready func() error, more ...prometheus.Collector) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := registerGatewayMetrics(reg, gw); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	if err := registerAll(reg, more...); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeStatus(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Set("Cache-Control", "no-store")
			rw.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(rw).Encode(struct {
				Status string `json:"status"`
				Reason string `json:"reason"`
			}{"not_connected", err.Error()})
			return
		}
		writeStatus(rw, http.StatusOK, "ok")
	})
	return mux, nil
}

// gatewayReady tells whether the gateway can serve: connected to NATS and
// to an engine.
func gatewayReady(ns *natsembed.Server, w *trine.Worker, engineAddr string) func() error {
	return func() error {
		if !ns.Conn.IsConnected() {
			return errors.New("not connected to NATS (--nats-url)")
		}
		// Connect gives the first session, which starts with the gateway,
		// a moment; Connected sees a session lost later.
		cctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if w.Connect(cctx) != nil || !w.Connected() {
			return fmt.Errorf("no engine reachable at %s (--engine)", engineAddr)
		}
		return nil
	}
}
