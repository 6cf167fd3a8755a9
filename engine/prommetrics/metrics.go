// Package prommetrics exports engine metrics to Prometheus: an
// engine.Observer that counts and times calls, and gauges read from the
// engine at scrape time. Safe for concurrent use.
//
// Concurrency: the collectors are safe for concurrent use, as Prometheus
// scrapes them from its own goroutines; the package starts none.
package prommetrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// Metrics is an engine.Observer backed by Prometheus collectors.
type Metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	voids    *prometheus.CounterVec
	known    atomic.Pointer[func(id string) bool]
}

var (
	_ engine.Observer     = (*Metrics)(nil)
	_ engine.VoidObserver = (*Metrics)(nil)
)

// New registers the call collectors on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trine_calls_total",
			Help: "Awaited calls by function and outcome code (ok on success).",
		}, []string{"function_id", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trine_call_duration_seconds",
			Help:    "Duration of awaited calls, by function.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. 26s
		}, []string{"function_id"}),
		voids: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trine_void_calls_total",
			Help: "Void (fire-and-forget) calls by function and code: ok when started, else why it was refused; their own outcome is never known.",
		}, []string{"function_id", "code"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.voids} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// unlabelled replaces function ids that may come from anyone (calls that
// were refused before any function ran), so that label values stay bounded
// by the registered functions.
const unlabelled = "_unregistered"

// Known tells the metrics which function ids are registered (the
// engine's HasFunction): a registered function's own invalid_argument or
// unavailable is then counted under its id. Until it is set, every such
// outcome goes under _unregistered.
func (m *Metrics) Known(has func(id string) bool) {
	m.known.Store(&has)
}

// CallDone records one call.
func (m *Metrics) CallDone(functionID string, code engine.Code, d time.Duration) {
	functionID, c := m.labels(functionID, code)
	m.calls.WithLabelValues(functionID, c).Inc()
	m.duration.WithLabelValues(functionID).Observe(d.Seconds())
}

// elsewhere replaces the ids of void calls started for functions this
// engine does not serve: they went to other engines over NATS, which may
// or may not serve them, and their ids may come from anyone.
const elsewhere = "_elsewhere"

// VoidCall records one void call.
func (m *Metrics) VoidCall(functionID string, code engine.Code) {
	if code == "" {
		if has := m.known.Load(); has == nil || !(*has)(functionID) {
			functionID = elsewhere
		}
	}
	m.voids.WithLabelValues(m.labels(functionID, code)).Inc()
}

// labels are a call's function_id and code labels.
func (m *Metrics) labels(functionID string, code engine.Code) (string, string) {
	has := m.known.Load()
	switch {
	case code == codes.FunctionNotFound:
		functionID = unlabelled
	case code == codes.InvalidArgument, code == codes.Unavailable:
		// Refused before routing (a bad id or payload) or answered by
		// the function itself: only a registered id keeps its label.
		if has == nil || !(*has)(functionID) {
			functionID = unlabelled
		}
	case has != nil && functionID != elsewhere && !(*has)(functionID):
		// Not served here: the call went to the other engines over
		// NATS, and may have ended before any answered (a payload over
		// max_payload, a deadline), so the id may be made up. The
		// engine that served it counts it under its id.
		functionID = elsewhere
	}
	c := string(code)
	if c == "" {
		c = "ok"
	}
	return functionID, c
}

// RegisterEngine adds gauges read from e at scrape time.
func RegisterEngine(reg prometheus.Registerer, e *engine.Engine) error {
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trine_workers_connected", Help: "Connected worker sessions."},
			func() float64 { return float64(e.Health().Workers) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trine_functions_registered", Help: "Registered function ids, built-in ones included."},
			func() float64 { return float64(e.Health().Functions) }),
	} {
		if err := reg.Register(g); err != nil {
			return err
		}
	}
	return nil
}
