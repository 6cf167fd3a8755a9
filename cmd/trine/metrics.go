package main

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trinehq/trine/console"
	"github.com/trinehq/trine/cronmodule"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/queuemodule"
	trine "github.com/trinehq/trine/worker-sdk"
)

// The metrics each part of a process exports, read from its counters at
// scrape time. docs/metrics.md is generated from what a real engine and
// gateway register (go generate; reference_test.go).

// stat is one metric read at scrape time: read emits its value, once per
// set of label values.
type stat struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	read func(emit func(v float64, labels ...string))
}

// stats is a prometheus.Collector of stat metrics.
type stats []stat

func (s stats) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range s {
		ch <- m.desc
	}
}

func (s stats) Collect(ch chan<- prometheus.Metric) {
	for _, m := range s {
		m.read(func(v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, labels...)
		})
	}
}

func counter(name, help string, read func() float64) stat {
	return stat{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue,
		func(emit func(float64, ...string)) { emit(read()) }}
}

func gauge(name, help string, read func() float64) stat {
	return stat{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue,
		func(emit func(float64, ...string)) { emit(read()) }}
}

// labelled is a metric with one label, whose values read emits.
func labelled(typ prometheus.ValueType, name, help, label string, read func(emit func(v float64, labels ...string))) stat {
	return stat{prometheus.NewDesc(name, help, []string{label}, nil), typ, read}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// registerAll registers every collector on reg.
func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// natsStats are a NATS connection's state and reconnects.
func natsStats(nc *nats.Conn) stats {
	return stats{
		gauge("trine_nats_connected", "1 while the process's NATS connection is up, 0 otherwise.",
			func() float64 { return bit(nc.IsConnected()) }),
		counter("trine_nats_reconnects_total", "Times the process's NATS connection was re-established after a loss.",
			func() float64 { return float64(nc.Stats().Reconnects) }),
	}
}

// engineLinkStats are trine gateway's link to its engines.
func engineLinkStats(w *trine.Worker) stats {
	return stats{
		gauge("trine_gateway_engine_connected", "1 while the gateway has a session with an engine (--engine), 0 otherwise.",
			func() float64 { return bit(w.Connected()) }),
		counter("trine_gateway_engine_reconnects_total", "Sessions with an engine the gateway established after its first: its reconnects.",
			func() float64 { return float64(max(w.Sessions(), 1) - 1) }),
	}
}

// refusals are the auth refusals of the listeners of one transport.
type refusals struct {
	transport string
	count     func() int64
}

// gatewayRefusals are gw's auth refusals, by browser transport.
func gatewayRefusals(gw *gateway.Gateway) []refusals {
	var out []refusals
	for _, t := range []gateway.Transport{gateway.TransportWebSocket, gateway.TransportSSE} {
		out = append(out, refusals{t.String(), func() int64 { return gw.Stats().AuthRefusals[t] }})
	}
	return out
}

// consoleRefusals are the console's refusals for want of a token, the
// http transport's (http triggers have no auth of their own).
func consoleRefusals(h http.Handler) refusals {
	if c, ok := h.(*console.Handler); ok {
		return refusals{"http", c.AuthRefusals}
	}
	return refusals{"http", func() int64 { return 0 }}
}

// refusalStats sums the auth refusals by transport.
func refusalStats(rs []refusals) stat {
	return labelled(prometheus.CounterValue, "trine_auth_refusals_total",
		"Connections and callers refused by a listener's auth (policy, auth function, tokens), by transport: grpc, iii, ws, sse, and http (the console's token check).", "transport",
		func(emit func(float64, ...string)) {
			sums := map[string]int64{}
			var order []string
			for _, r := range rs {
				if _, ok := sums[r.transport]; !ok {
					order = append(order, r.transport)
				}
				sums[r.transport] += r.count()
			}
			for _, t := range order {
				emit(float64(sums[t]), t)
			}
		})
}

// moduleStats are the modules' counters.
func moduleStats(mods *engineModules) stats {
	st := stats{
		counter("trine_stream_publishes_total", "Stream events the engine published to NATS for gateways.",
			func() float64 { return float64(mods.streams.Stats().Published) }),
		counter("trine_stream_publish_errors_total", "Stream events NATS refused (logged, and published again until NATS takes them or a later event of their group).",
			func() float64 { return float64(mods.streams.Stats().PublishErrors) }),
		gauge("trine_stream_history_events", "Events the engine's in-memory history holds for since (0 with --store jetstream, whose history is in JetStream).",
			func() float64 { return float64(mods.streams.Stats().HistoryEvents) }),
		gauge("trine_stream_history_bytes", "Bytes of events the engine's in-memory history holds (bounded by --stream-history-total-bytes).",
			func() float64 { return float64(mods.streams.Stats().HistoryBytes) }),
		counter("trine_cron_fires_total", "Cron fires this engine ran (it won their claim).",
			func() float64 { return float64(mods.crons.Stats().Fires) }),
		labelled(prometheus.CounterValue, "trine_cron_skips_total", "Cron fires this engine skipped, by reason: late, fire_rate, running, no_jetstream, claim_failed, condition.", "reason",
			func(emit func(float64, ...string)) {
				sk := mods.crons.Stats().Skips
				for _, r := range cronmodule.SkipReasons {
					emit(float64(sk[r]), r)
				}
			}),
		counter("trine_pubsub_drops_total", "Messages subscribe triggers on this engine did not get: past their pending limits (a slow function) or undecodable.",
			func() float64 { return float64(mods.pubsub.Stats().Dropped) }),
		labelled(prometheus.CounterValue, "trine_http_responses_total", "Answers of http trigger routes, by HTTP status code.", "code",
			func(emit func(float64, ...string)) {
				rs := mods.routes.Stats().Responses
				for _, code := range slices.Sorted(maps.Keys(rs)) {
					emit(float64(rs[code]), strconv.Itoa(code))
				}
			}),
	}
	return append(st, queueStats(mods)...)
}

// queueFigures reads the queues' figures from JetStream at most once a
// second, and not at all while the queues wait for JetStream. A read runs
// on a goroutine of its own and a scrape waits for it at most
// queueFiguresWait, then gives the figures read last: /metrics never
// hangs on a NATS connection that does.
type queueFigures struct {
	mods    *engineModules
	mu      sync.Mutex
	at      time.Time // of the last read begun
	reading chan struct{}
	figs    map[string][3]float64 // depth, in flight, dead letters
}

// queueFiguresWait is the longest a scrape waits for the queues' figures.
const queueFiguresWait = 100 * time.Millisecond

func (q *queueFigures) read() map[string][3]float64 {
	q.mu.Lock()
	if q.reading == nil && time.Since(q.at) >= time.Second {
		q.at, q.reading = time.Now(), make(chan struct{})
		go q.refresh(q.reading)
	}
	reading := q.reading
	q.mu.Unlock()
	if reading != nil {
		timer := time.NewTimer(queueFiguresWait)
		select {
		case <-reading:
		case <-timer.C:
		}
		timer.Stop()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.figs
}

// refresh reads the figures, within 2 seconds, and closes done.
func (q *queueFigures) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	fig, err := q.mods.queues.Figures(ctx)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reading = nil
	close(done)
	if err != nil { // keep the last figures (none while the queues wait for JetStream)
		return
	}
	q.figs = make(map[string][3]float64, len(fig))
	for _, f := range fig {
		q.figs[f.Queue] = [3]float64{float64(f.Depth), float64(f.InFlight), float64(f.DeadLetters)}
	}
}

// queueStats are the named queues' figures (from JetStream) and this
// engine's counts, labelled by queue: the names the configuration gives.
func queueStats(mods *engineModules) stats {
	figs := &queueFigures{mods: mods}
	names := slices.Sorted(maps.Keys(mods.queues.Queues()))
	figure := func(name, help string, i int) stat {
		return labelled(prometheus.GaugeValue, name, help, "queue", func(emit func(float64, ...string)) {
			f := figs.read()
			for _, q := range names {
				if v, ok := f[q]; ok {
					emit(v[i], q)
				}
			}
		})
	}
	count := func(name, help string, get func(c queuemodule.Counts) int64) stat {
		return labelled(prometheus.CounterValue, name, help, "queue", func(emit func(float64, ...string)) {
			cs := mods.queues.Counts()
			for _, q := range names {
				emit(float64(get(cs[q])), q)
			}
		})
	}
	return stats{
		figure("trine_queue_depth", "Jobs waiting to run in a named queue (JetStream; absent while the queues wait for it).", 0),
		figure("trine_queue_in_flight", "Jobs of a named queue running or waiting for a retry's backoff, on every engine.", 1),
		figure("trine_queue_dead_letters", "Jobs in a named queue's dead-letter queue.", 2),
		count("trine_queue_retries_total", "Failed attempts of a named queue's jobs this engine gave another try.",
			func(c queuemodule.Counts) int64 { return c.Retries }),
		count("trine_queue_dead_lettered_total", "Jobs of a named queue this engine moved to the dead-letter queue.",
			func(c queuemodule.Counts) int64 { return c.DeadLettered }),
	}
}

// countedListener counts the connections it accepted and those still
// open.
type countedListener struct {
	net.Listener
	name             string
	accepted, active atomic.Int64
}

func countConns(name string, l net.Listener) *countedListener {
	return &countedListener{Listener: l, name: name}
}

func (l *countedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	l.active.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countedListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.active.Add(-1) })
	return c.Conn.Close()
}

// SyscallConn and CloseWrite reach the socket under the count: net/http
// and the gateway half-close a socket after their last bytes, and the
// socket's own options stay within reach.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// PlainConn tells the gateway that the count's bytes are the socket's
// (gateway.PlainConn), so that its writer pool writes the socket itself.
func (c *countedConn) PlainConn() net.Conn { return c.Conn }

func (c *countedConn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.ErrUnsupported
	}
	return cw.CloseWrite()
}

// listenerStats are the connections of the listeners ls that listen
// opened, labelled by their name (grpc, http, stream, iii, console, and
// grpc/1, iii/2… for the listeners: of the config file).
func listenerStats(ls ...net.Listener) stats {
	var cs []*countedListener
	for _, l := range ls {
		if c, ok := l.(*countedListener); ok {
			cs = append(cs, c)
		}
	}
	each := func(get func(*countedListener) int64) func(emit func(float64, ...string)) {
		return func(emit func(float64, ...string)) {
			for _, c := range cs {
				emit(float64(get(c)), c.name)
			}
		}
	}
	return stats{
		labelled(prometheus.GaugeValue, "trine_listener_connections", "Open TCP connections, by listener (grpc, iii, http, stream, console; grpc/1, iii/2… for the config file's listeners).", "listener",
			each(func(c *countedListener) int64 { return c.active.Load() })),
		labelled(prometheus.CounterValue, "trine_listener_accepts_total", "TCP connections accepted, by listener.", "listener",
			each(func(c *countedListener) int64 { return c.accepted.Load() })),
	}
}
