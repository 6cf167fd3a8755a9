package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	trine "github.com/trinehq/trine/worker-sdk"
)

// metricValue is the value of the series line (name and labels, as
// /metrics writes them) in body, or -1.
func metricValue(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// TestNATSMetrics: trine_nats_connected follows the connection and
// trine_nats_reconnects_total counts its reconnects.
func TestNATSMetrics(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(natsStats(nc)); err != nil {
		t.Fatal(err)
	}
	want := func(connected, reconnects string) func() error {
		return poll.Holds("connected "+connected+", reconnects "+reconnects, func() bool {
			return testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP trine_nats_connected 1 while the process's NATS connection is up, 0 otherwise.
# TYPE trine_nats_connected gauge
trine_nats_connected `+connected+`
# HELP trine_nats_reconnects_total Times the process's NATS connection was re-established after a loss.
# TYPE trine_nats_reconnects_total counter
trine_nats_reconnects_total `+reconnects+`
`)) == nil
		})
	}
	poll.CheckFor(t, 5*time.Second, want("1", "0"))
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 5*time.Second, want("1", "1"))
}

// TestEngineLinkMetrics: a gateway's link to its engines shows as
// connected, and a lost and re-established session counts one
// reconnect.
func TestEngineLinkMetrics(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{})
	p := enginetest.NewProxy(t, srv.Addr)
	w := trine.RegisterWorker(p.Addr, trine.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond), trine.WithCloseTimeout(time.Second))
	defer w.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(engineLinkStats(w)); err != nil {
		t.Fatal(err)
	}
	link := func() (float64, float64) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var c, r float64
		for _, mf := range mfs {
			switch mf.GetName() {
			case "trine_gateway_engine_connected":
				c = mf.GetMetric()[0].GetGauge().GetValue()
			case "trine_gateway_engine_reconnects_total":
				r = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return c, r
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("connected", func() bool { c, r := link(); return c == 1 && r == 0 }))
	p.Partition()
	poll.CheckFor(t, 10*time.Second, poll.Holds("disconnected", func() bool { c, _ := link(); return c == 0 }))
	p.Heal()
	poll.CheckFor(t, 10*time.Second, poll.Holds("reconnected once", func() bool { c, r := link(); return c == 1 && r == 1 }))
}

// TestMetricsMove: through a real engine, refusals by the gRPC and iii
// listeners' policies, void calls and http trigger answers move their
// metrics.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("good"))
	tokens := writeTemp(t, "tokens:\n  - sha256: "+hex.EncodeToString(sum[:])+"\n    name: good\n    allowed_functions: [\"engine::health::check\"]\n")
	conf := writeTemp(t, "listeners:\n  - protocol: grpc\n    addr: 127.0.0.1:0\n    tokens_file: "+tokens+"\n  - protocol: iii\n    addr: 127.0.0.1:0\n    tokens_file: "+tokens+"\n")
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--config", conf)...)
	grpcAddr := regexp.MustCompile(` grpc/1=(\S+)`).FindStringSubmatch(e.stdout.String())[1]
	iiiAddr := regexp.MustCompile(` iii/1=(\S+)`).FindStringSubmatch(e.stdout.String())[1]
	for range 2 {
		if r := runTrine(t, testEnv(), "", "trigger", "--engine", grpcAddr, "--token", "bad", "engine::health::check"); r.code != 1 || !strings.Contains(r.stderr, "unauthorized") {
			t.Fatalf("an unknown token: %d %s", r.code, r.stderr)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+iiiAddr+"/", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer bad"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("iii with an unknown token: %v %v", resp, err)
	}
	if r := runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "--void", "engine::health::check"); r.code != 0 {
		t.Fatalf("void call: %d %s", r.code, r.stderr)
	}
	runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "--void", "no::such")
	get(t, e.http+"/no-route")
	for series, want := range map[string]float64{
		`trine_auth_refusals_total{transport="grpc"}`:                              2,
		`trine_auth_refusals_total{transport="iii"}`:                               1,
		`trine_auth_refusals_total{transport="http"}`:                              0,
		`trine_auth_refusals_total{transport="ws"}`:                                0,
		`trine_void_calls_total{code="ok",function_id="engine::health::check"}`:    1,
		`trine_void_calls_total{code="ok",function_id="_elsewhere"}`:               1,
		`trine_http_responses_total{code="404"}`:                                   1,
		`trine_listener_accepts_total{listener="iii/1"}`:                           1,
		`trine_cron_skips_total{reason="no_jetstream"}`:                            0,
		`trine_stream_history_bytes`:                                               0,
		`trine_pubsub_drops_total`:                                                 0,
		`trine_listener_connections{listener="grpc/1"}`:                            0,
		`trine_calls_total{code="function_not_found",function_id="_unregistered"}`: -1,
		`trine_void_calls_total{code="ok",function_id="no::such"}`:                 -1,
	} {
		var body string
		poll.CheckFor(t, 10*time.Second, poll.Holds(series, func() bool {
			_, body = get(t, e.http+"/metrics")
			return metricValue(body, series) == want
		}))
	}
}

// TestMetricsDoNotWaitForAFrozenNATS: while the NATS connection hangs
// (the server answers nothing, the socket stays open), /metrics still
// answers at once, with the queues' figures it read last.
func TestMetricsDoNotWaitForAFrozenNATS(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	p := enginetest.NewProxy(t, ns.Addr().String())
	conf := writeTemp(t, "queues:\n  jobs:\n    max_retries: 2\n")
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--config", conf, "--nats-url", "nats://"+p.Addr, "--store", "memory")...)
	t.Cleanup(p.Thaw) // before the engine stops
	poll.CheckFor(t, 20*time.Second, poll.Holds("the queue figures", func() bool {
		_, body := get(t, e.http+"/metrics")
		return metricValue(body, `trine_queue_depth{queue="jobs"}`) == 0
	}))
	p.Freeze()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for start := time.Now(); time.Since(start) < 3*time.Second; <-tick.C {
		t0 := time.Now()
		code, body := get(t, e.http+"/metrics")
		if d := time.Since(t0); d > 1500*time.Millisecond { // a read waits 2 s for a frozen NATS
			t.Fatalf("GET /metrics took %v with NATS frozen", d)
		}
		if code != 200 || metricValue(body, `trine_queue_depth{queue="jobs"}`) != 0 {
			t.Fatalf("GET /metrics = %d without the last queue figures:\n%s", code, body)
		}
	}
}
