package gateway_test

import (
	"bytes"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule"
)

// latencies is a gateway.Observer that keeps what it is told.
type latencies struct {
	mu     sync.Mutex
	client map[string][]time.Duration // by stream label
}

func newLatencies() *latencies {
	return &latencies{client: map[string][]time.Duration{}}
}

func (l *latencies) ClientLatency(stream string, d time.Duration) {
	l.mu.Lock()
	l.client[stream] = append(l.client[stream], d)
	l.mu.Unlock()
}

func (l *latencies) get(m func(*latencies) map[string][]time.Duration, k string) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), m(l)[k]...)
}

func byStream(l *latencies) map[string][]time.Duration { return l.client }

// TestDeliveryLatency: every live event written to a WebSocket or an SSE
// stream gives one sample, from the store's commit time in the frame to
// the write, by transport; snapshots give none. The histogram's buckets
// hold them by their bounds.
func TestDeliveryLatency(t *testing.T) {
	obs := newLatencies()
	s := newStack(t, gateway.Config{Observer: obs}, streammodule.Config{})
	ws := s.dial(t, groupPath("s", "g"), nil)
	sse := s.sse(t, groupPath("s", "g"), nil)
	must(t, ws.read().kind() == "sync", "ws sync")
	if _, f := sse.next(); f.kind() != "sync" {
		t.Fatalf("sse sync: %s", f.Raw)
	}
	const n = 3
	start := time.Now()
	for i := range n {
		s.set(t, "s", "g", "a", i)
	}
	for range n {
		must(t, ws.read().Seq > 0, "ws event")
		sse.next()
	}
	took := time.Since(start)
	for _, tr := range []gateway.Transport{gateway.TransportWebSocket, gateway.TransportSSE} {
		poll.CheckFor(t, 5*time.Second, poll.Holds(tr.String()+" samples", func() bool { return s.gw.DeliveryLatency(tr).Count == n }))
		h := s.gw.DeliveryLatency(tr)
		// The commit time is in milliseconds: a sample may exceed the
		// wall time of the test by up to 1 ms.
		if h.Sum < 0 || h.Sum > n*(took+time.Millisecond) {
			t.Errorf("%s samples sum to %v, want 0..%v", tr, h.Sum, n*(took+time.Millisecond))
		}
		bounds := gateway.DeliveryBounds()
		for i, c := range h.Buckets {
			if i > 0 && c < h.Buckets[i-1] || c > h.Count {
				t.Errorf("%s buckets %v of %d samples are not cumulative", tr, h.Buckets, h.Count)
			}
			if time.Duration(bounds[i]*float64(time.Second)) >= took+time.Millisecond && c != n {
				t.Errorf("%s: %d samples of at most %gs, want all %d (the test took %v)", tr, c, bounds[i], n, took)
			}
		}
	}
	if h := s.gw.DeliveryLatency(gateway.TransportWebSocket); h.Count != n {
		t.Errorf("%d ws samples, want %d", h.Count, n)
	}
	if st := s.gw.Stats(); st.DeliveryClockSkew != 0 {
		t.Errorf("Stats().DeliveryClockSkew = %d, want 0", st.DeliveryClockSkew)
	}
}

// skewedEvents moves every event's commit time an hour ahead, as an
// engine whose clock is ahead of the gateway's would.
type skewedEvents struct{ gateway.Events }

func (e skewedEvents) Subscribe(stream, group string, h func([]byte)) (func(), error) {
	return e.Events.Subscribe(stream, group, func(b []byte) {
		const key = `"timestamp":`
		i := bytes.Index(b, []byte(key)) + len(key)
		j := i + bytes.IndexByte(b[i:], ',')
		ms, _ := strconv.ParseInt(string(b[i:j]), 10, 64)
		out := append(append(append([]byte(nil), b[:i]...), strconv.FormatInt(ms+time.Hour.Milliseconds(), 10)...), b[j:]...)
		h(out)
	})
}

// TestDeliveryClockSkew: a commit time ahead of the gateway's clock
// counts as 0 and is counted as skew.
func TestDeliveryClockSkew(t *testing.T) {
	s := newStack(t, gateway.Config{}, streammodule.Config{})
	obs := newLatencies()
	gw, err := gateway.New(gateway.Config{Backend: s.m, Events: skewedEvents{s.sub}, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { gw.Close(); srv.Close() })
	ws := (&stack{srv: srv}).dial(t, groupPath("s", "g"), nil)
	must(t, ws.read().kind() == "sync", "sync")
	s.set(t, "s", "g", "a", 1)
	must(t, ws.read().Seq == 1, "event")
	poll.CheckFor(t, 5*time.Second, poll.Holds("a sample", func() bool { return gw.DeliveryLatency(gateway.TransportWebSocket).Count == 1 }))
	if h := gw.DeliveryLatency(gateway.TransportWebSocket); h.Sum != 0 || h.Buckets[0] != 1 {
		t.Errorf("sample %v in buckets %v, want 0 in the first", h.Sum, h.Buckets)
	}
	if st := gw.Stats(); st.DeliveryClockSkew != 1 {
		t.Errorf("Stats().DeliveryClockSkew = %d, want 1", st.DeliveryClockSkew)
	}
}

func sample(sub string, ms any) map[string]any {
	return map[string]any{"type": "latency", "data": map[string]any{"subscriptionId": sub, "ms": ms}}
}

// TestClientLatencySamples: a page's commit-to-render sample is exported
// under its subscription's stream, once that stream has delivered an
// event, and only the first StreamLabels streams have labels of their
// own. Samples that are negative, too large, of no subscription or too
// frequent are refused: they change nothing and the socket stays open.
func TestClientLatencySamples(t *testing.T) {
	obs := newLatencies()
	s := newStack(t, gateway.Config{Observer: obs, StreamLabels: 1, ClientLatencyEvery: time.Hour}, streammodule.Config{})
	c := s.dial(t, "/", nil)
	c.send(join("s1", "chat", "g"))
	c.send(join("s2", "other", "g"))
	must(t, c.read().kind() == "sync" && c.read().kind() == "sync", "syncs")
	s.set(t, "chat", "g", "a", 1)
	must(t, c.read().Seq == 1, "chat event")
	s.set(t, "other", "g", "a", 1)
	must(t, c.read().Seq == 1, "other event")

	c.send(sample("s1", 42))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the sample", func() bool { return len(obs.get(byStream, "chat")) == 1 }))
	if d := obs.get(byStream, "chat")[0]; d != 42*time.Millisecond {
		t.Errorf("sample %v, want 42ms", d)
	}
	// Refused: too frequent (one an hour here), then on a fresh
	// connection negative, too large, unknown, malformed.
	c.send(sample("s1", 10))
	c.send(map[string]any{"type": "ping"})
	must(t, c.read().Type == "pong", "pong")

	d := s.dial(t, "/", nil)
	d.send(join("s1", "chat", "g"))
	must(t, d.read().kind() == "sync", "sync")
	for _, bad := range []map[string]any{sample("s1", -1), sample("s1", 1e9), sample("nope", 5), sample("s1", "5"),
		{"type": "latency"}} {
		d.send(bad)
		f := d.read()
		for f.Type == "stream" { // a replay after a shared snapshot
			f = d.read()
		}
		must(t, f.Type == "error" && f.Code == "bad_frame" && f.SubscriptionID == nil, "%v: %s, want a bad_frame error without a subscriptionId", bad, f.Raw)
	}
	st := s.gw.Stats()
	if st.ClientLatencyRefused != 6 {
		t.Errorf("Stats().ClientLatencyRefused = %d, want 6", st.ClientLatencyRefused)
	}
	if got := obs.get(byStream, "chat"); len(got) != 1 {
		t.Errorf("chat samples %v, want one", got)
	}

	// A stream past StreamLabels is _other.
	e := s.dial(t, "/", nil)
	e.send(join("x", "other", "g"))
	must(t, e.read().kind() == "sync", "sync")
	e.send(sample("x", 7))
	poll.CheckFor(t, 5*time.Second, poll.Holds("the _other sample", func() bool { return len(obs.get(byStream, "_other")) == 1 }))
	if got := obs.get(byStream, "other"); len(got) != 0 {
		t.Errorf("samples labelled other: %v, want none (past StreamLabels)", got)
	}
}
