package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/jsboot"
	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// streams is the gateway serving an engine's streams to browsers, with
// its listener's server; events travel on the engine's NATS connection.
type streams struct {
	gw     *gateway.Gateway
	http   *http.Server
	tokens *jwtauth.Verifier
	// presence shares the gateway's presence members once presencePart,
	// an optional part, has opened its bucket.
	presence     *natsfanout.Presence
	presencePart jsboot.Part
}

// jetStreamBootTimeout is how long an engine waits for JetStream to accept
// its streams: a cluster booting beside it takes a while to elect a leader
// and learn its peers (jsboot retries until then).
const jetStreamBootTimeout = 2 * time.Minute

// maxItemBytes is --stream-max-item-bytes, lowered so that a write's
// result, which carries the old and the new value, fits a message of
// --max-message-bytes: a write the caller cannot be told of must not
// happen.
func maxItemBytes(cfg engineConfig) int {
	return max(1, min(cfg.Stream.MaxItemBytes, (cfg.MaxMessageBytes-resultHeadroom)/2))
}

// resultHeadroom is what a write's result holds besides its two values.
const resultHeadroom = 16 << 10

// connectNATS starts the embedded NATS server, or connects to --nats-url.
func connectNATS(cfg engineConfig, log *slog.Logger) (*natsembed.Server, error) {
	if cfg.NATS.URL != "" {
		o, err := natsClientOptions(cfg, "trine-engine", log)
		if err != nil {
			return nil, err
		}
		return natsembed.Connect(cfg.NATS.URL, o)
	}
	listen := cfg.NATS.Addr
	if listen == "off" {
		listen = ""
	}
	// JetStream is always on: cron claims and queues live there, and
	// --store jetstream keeps streams and state there too.
	o := natsembed.Options{Name: "trine-engine", Listen: listen, Logger: log, Token: cfg.NATS.Token,
		JetStreamDir: filepath.Join(cfg.DataDir, "nats")}
	ns, err := natsembed.Start(o)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		err = fmt.Errorf("%w; change --nats-addr (or off)", err)
	}
	return ns, err
}

// newStreamModule opens the stream module on the store --store asks for.
func newStreamModule(cfg engineConfig, ns *natsembed.Server, lists *store.Lists, log *slog.Logger) (*streammodule.Module, error) {
	open := storeOpener(cfg, ns, log, "streams", jsstore.Config{})
	mcfg := cfg.Stream
	mcfg.OpenStore, mcfg.Publisher, mcfg.Lists, mcfg.Logger, mcfg.TracerProvider = open, natsfanout.NewPublisher(ns.Conn), lists, log, cfg.OTel.provider
	mcfg.MaxItemBytes = maxItemBytes(cfg)
	if cfg.Store.Kind == "jetstream" {
		// History every engine shares, so any gateway can replay events
		// whichever engine published them.
		ctx, cancel := context.WithTimeout(context.Background(), jetStreamBootTimeout)
		h, err := natsfanout.OpenHistory(ctx, ns.Conn, natsfanout.HistoryConfig{PerGroup: cfg.Stream.HistorySize, Replicas: cfg.Store.Replicas, MaxBytes: int64(cfg.Stream.HistoryTotalBytes)})
		cancel()
		if err != nil {
			return nil, err
		}
		mcfg.History = h
	}
	mod, err := streammodule.New(mcfg)
	if err != nil {
		return nil, fmt.Errorf("open stream store: %w", err)
	}
	return mod, nil
}

// startStreamGateway builds the gateway that serves mod's streams to browsers
// on the engine's stream listener.
func startStreamGateway(cfg engineConfig, eng *engine.Engine, mod *streammodule.Module, ns *natsembed.Server, log *slog.Logger) (*streams, error) {
	gcfg := gatewayConfig(cfg, mod, natsfanout.NewSubscriber(ns.Conn), eng, log)
	s := &streams{}
	var err error
	s.presence, s.presencePart = presenceStore(cfg, ns)
	gcfg.Presence = s.presence
	if s.tokens, err = browserTokens(cfg, log); err != nil {
		return nil, err
	}
	if s.tokens != nil {
		gcfg.Tokens = s.tokens
	}
	s.gw, err = gateway.New(gcfg)
	if err != nil {
		s.close()
		return nil, err
	}
	mod.SetPresence(s.gw)
	s.http = &http.Server{
		Handler:           s.gw,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// storeOpener opens the store --store asks for: memory, DATA_DIR/dir, or
// a JetStream stream (js's, default TRINE_STREAMS) on the engine's NATS.
func storeOpener(cfg engineConfig, ns *natsembed.Server, log *slog.Logger, dir string, js jsstore.Config) func(store.Options) (store.Store, error) {
	switch cfg.Store.Kind {
	case "file":
		path := filepath.Join(cfg.DataDir, dir)
		return func(o store.Options) (store.Store, error) {
			return store.OpenFile(path, store.FileOptions{Options: o, Logger: log})
		}
	case "jetstream":
		js.Replicas = cfg.Store.Replicas
		js.MaxBatchWrites, js.MaxBatchBytes, js.BatchWait = cfg.Store.BatchWrites, cfg.Store.BatchBytes, cfg.Store.BatchWait
		return func(o store.Options) (store.Store, error) {
			ctx, cancel := context.WithTimeout(context.Background(), jetStreamBootTimeout)
			defer cancel()
			return jsstore.Open(ctx, ns.Conn, js, o)
		}
	}
	return func(o store.Options) (store.Store, error) { return store.NewMemory(o), nil }
}

// presenceStore is the store that shares presence through JetStream, and
// the optional part that opens it.
func presenceStore(cfg engineConfig, ns *natsembed.Server) (*natsfanout.Presence, jsboot.Part) {
	p := natsfanout.NewPresence(ns.Conn, cfg.Presence)
	return p, jsboot.Part{Name: "presence", Open: p.Open}
}

// gatewayConfig is the gateway configuration both commands derive from
// their settings.
func gatewayConfig(cfg engineConfig, b gateway.Backend, ev gateway.Events, c gateway.Caller, log *slog.Logger) gateway.Config {
	g := cfg.Gateway
	g.Backend, g.Events, g.Caller, g.Logger, g.TracerProvider = b, ev, c, log, cfg.OTel.provider
	g.AllowedOrigins, g.AllowedHosts = cfg.AllowedOrigins, cfg.AllowedHosts
	g.Observer = newLatencyMetrics()
	return g
}

// latencyMetrics exports a gateway's latencies: the samples pages report
// (gateway.Observer) and the gateway's own delivery histogram.
type latencyMetrics struct {
	gw      *gateway.Gateway // set when registered
	deliver *prometheus.Desc
	bounds  []float64
	client  *prometheus.HistogramVec
}

func newLatencyMetrics() *latencyMetrics {
	return &latencyMetrics{
		deliver: prometheus.NewDesc("trine_stream_delivery_seconds",
			"Live events from the store's commit (engine clock, ms resolution) to the end of their write to a browser socket (gateway clock), by transport.",
			[]string{"transport"}, nil),
		bounds: gateway.DeliveryBounds(), // 1ms .. 16s
		client: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trine_stream_client_latency_seconds",
			Help:    "Commit to render in browsers, as @trine/client reports it (browser clock), by stream (the first --stream-latency-labels streams, the rest _other).",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 15), // 2ms .. 33s
		}, []string{"stream"}),
	}
}

func (m *latencyMetrics) ClientLatency(stream string, d time.Duration) {
	m.client.WithLabelValues(stream).Observe(d.Seconds())
}

func (m *latencyMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.deliver
	m.client.Describe(ch)
}
func (m *latencyMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, t := range []gateway.Transport{gateway.TransportWebSocket, gateway.TransportSSE} {
		h := m.gw.DeliveryLatency(t)
		buckets := make(map[float64]uint64, len(m.bounds))
		for i, b := range m.bounds {
			buckets[b] = h.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(m.deliver, h.Count, h.Sum.Seconds(), buckets, t.String())
	}
	m.client.Collect(ch)
}

// registerGatewayMetrics exports gw's counters, and its latencies when
// its Observer is a latencyMetrics.
func registerGatewayMetrics(reg prometheus.Registerer, gw *gateway.Gateway) error {
	stat := func(f func(gateway.Stats) float64) func() float64 {
		return func() float64 { return f(gw.Stats()) }
	}
	if m, ok := gw.Observer().(*latencyMetrics); ok {
		m.gw = gw
		if err := reg.Register(m); err != nil {
			return err
		}
	}
	for _, c := range []prometheus.Collector{
		stats{labelled(prometheus.GaugeValue, "trine_stream_connections", "Open browser connections, by transport: ws (WebSocket) or sse.", "transport",
			func(emit func(float64, ...string)) {
				st := gw.Stats()
				for _, t := range []gateway.Transport{gateway.TransportWebSocket, gateway.TransportSSE} {
					emit(float64(st.ConnsByTransport[t]), t.String())
				}
			})},
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_stream_resyncs_total", Help: "Browser subscriptions told to resync: their since was past the history, so they got a fresh snapshot."},
			stat(func(st gateway.Stats) float64 { return float64(st.Resyncs) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trine_stream_groups_subscribed", Help: "Groups the gateway receives events for."},
			stat(func(st gateway.Stats) float64 { return float64(st.Groups) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_stream_slow_consumer_closes_total", Help: "Browser connections closed for falling behind."},
			stat(func(st gateway.Stats) float64 { return float64(st.SlowConsumerCloses) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_stream_snapshot_reads_total", Help: "Snapshot reads (and pages) the gateway asked for; joins sharing one count once."},
			stat(func(st gateway.Stats) float64 { return float64(st.SnapshotReads) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_stream_history_reads_total", Help: "History reads (since) the gateway asked for; joins sharing one count once."},
			stat(func(st gateway.Stats) float64 { return float64(st.HistoryReads) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trine_presence_subscriptions", Help: "Presence subscriptions held (each makes its connection a member of its group)."},
			stat(func(st gateway.Stats) float64 { return float64(st.PresenceSubscriptions) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trine_presence_groups", Help: "Groups whose presence the gateway tracks."},
			stat(func(st gateway.Stats) float64 { return float64(st.PresenceGroups) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_presence_write_errors_total", Help: "Presence entries this gateway could not write to the bucket (retried)."},
			stat(func(st gateway.Stats) float64 { return float64(st.PresenceWriteErrors) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_stream_deliveries_total", Help: "Live events handed to browser subscriptions (not snapshots or catch-up)."},
			stat(func(st gateway.Stats) float64 { return float64(st.Deliveries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_stream_delivery_clock_skew_total", Help: "Live events written whose commit time was ahead of the gateway's clock (observed as 0 in trine_stream_delivery_seconds)."},
			stat(func(st gateway.Stats) float64 { return float64(st.DeliveryClockSkew) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trine_stream_client_latency_refused_total", Help: "Latency samples from browsers refused: invalid, or more than one per --stream-latency-every."},
			stat(func(st gateway.Stats) float64 { return float64(st.ClientLatencyRefused) })),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// shutdown closes the browser connections and the gateway's listener.
func (s *streams) shutdown(ctx context.Context) {
	_ = s.gw.Close()
	if err := s.http.Shutdown(ctx); err != nil {
		_ = s.http.Close()
	}
}

// close closes the gateway and stops its token verifier.
func (s *streams) close() {
	if s.gw != nil {
		_ = s.gw.Close()
	}
	if s.tokens != nil {
		s.tokens.Close()
	}
}

// browserTokens is the JWT verifier the --stream-jwt-* settings ask for,
// or nil.
func browserTokens(cfg engineConfig, log *slog.Logger) (*jwtauth.Verifier, error) {
	if !cfg.StreamJWT.Enabled() {
		return nil, nil
	}
	if cfg.Gateway.AuthFunction != "" {
		return nil, errors.New("--stream-auth-function and the --stream-jwt-* settings exclude each other: pick one way to admit browsers")
	}
	c := cfg.StreamJWT
	c.Logger = log
	return jwtauth.New(c)
}

// natsClientOptions are the options of a connection to --nats-url: its
// credentials and TLS.
func natsClientOptions(cfg engineConfig, name string, log *slog.Logger) (natsembed.Options, error) {
	o := natsembed.Options{Name: name, Logger: log, ConnectTimeout: cfg.NATS.ConnectTimeout,
		CredsFile: cfg.NATS.Creds, NKeySeedFile: cfg.NATS.NKey}
	if t := cfg.NATS.TLS; t.ClientCA != "" || t.Cert != "" {
		tc, err := tlsconf.Client(t.ClientCA, t.Cert, t.Key)
		if err != nil {
			return o, fmt.Errorf("nats: %w", err)
		}
		o.TLS = tc
	}
	return o, nil
}
