package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/poll"
)

// TestGatewayDeliveryLatency: trine gateway, in its own process, times
// every live event from the engine's commit (the time in the frame) to
// its write on a WebSocket and an SSE stream; /metrics has both
// histograms with one sample per delivery and sane values, and a page's
// latency sample is exported under its stream.
func TestGatewayDeliveryLatency(t *testing.T) {
	t.Parallel()
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--store", "memory")...)
	natsAddr, _ := strings.CutPrefix(e.nats, "embedded,")
	w := connectWorker(t, e.grpc)
	stream, httpAddr := startGateway(t, "--engine", e.grpc, "--nats-url", "nats://"+natsAddr, "--stream-latency-every", "1ms")
	poll.CheckFor(t, startTimeout, poll.Holds("the gateway to be ready", func() bool { code, _ := get(t, httpAddr+"/readyz"); return code == 200 }))
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()

	ws, _, err := websocket.Dial(ctx, "ws://"+stream+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"join","data":{"subscriptionId":"s1","streamName":"s","groupId":"g"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || !strings.Contains(string(b), `"type":"sync"`) {
		t.Fatalf("ws sync: %s %v", b, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+stream+"/stream/s/g", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := bufio.NewScanner(resp.Body)
	nextSSE := func(want string) {
		t.Helper()
		for sse.Scan() {
			if strings.HasPrefix(sse.Text(), "data: ") && strings.Contains(sse.Text(), want) {
				return
			}
		}
		t.Fatalf("SSE ended before %s: %v", want, sse.Err())
	}
	nextSSE(`"type":"sync"`)

	const n = 5
	start := time.Now()
	for i := 1; i <= n; i++ {
		if _, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "s", "group_id": "g", "item_id": "a", "data": i}); err != nil {
			t.Fatal(err)
		}
		seq := `"seq":` + strconv.Itoa(i) + `,`
		if _, b, err := ws.Read(ctx); err != nil || !strings.Contains(string(b), seq) {
			t.Fatalf("ws event %d: %s %v", i, b, err)
		}
		nextSSE(seq)
	}
	took := time.Since(start).Seconds()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"latency","data":{"subscriptionId":"s1","ms":25}}`)); err != nil {
		t.Fatal(err)
	}

	var body string
	poll.CheckFor(t, 5*time.Second, poll.Holds("the histograms to count every delivery", func() bool {
		_, body = get(t, httpAddr+"/metrics")
		return metricValue(body, `trine_stream_delivery_seconds_count{transport="ws"}`) == n &&
			metricValue(body, `trine_stream_delivery_seconds_count{transport="sse"}`) == n &&
			metricValue(body, `trine_stream_client_latency_seconds_count{stream="s"}`) == 1
	}))
	for _, tr := range []string{"ws", "sse"} {
		// Both clocks are this machine's: every sample is within the
		// test's own time (plus 1 ms, the commit time's resolution).
		if sum := metricValue(body, `trine_stream_delivery_seconds_sum{transport="`+tr+`"}`); sum < 0 || sum > n*(took+0.001) {
			t.Errorf("%s: sum of %d samples %v s, want 0..%v", tr, n, sum, n*(took+0.001))
		}
	}
	if sum := metricValue(body, `trine_stream_client_latency_seconds_sum{stream="s"}`); sum != 0.025 {
		t.Errorf("client latency sum %v, want 0.025", sum)
	}
	if v := metricValue(body, "trine_stream_delivery_clock_skew_total"); v != 0 {
		t.Errorf("trine_stream_delivery_clock_skew_total = %v, want 0", v)
	}
	if v := metricValue(body, "trine_stream_client_latency_refused_total"); v != 0 {
		t.Errorf("trine_stream_client_latency_refused_total = %v, want 0", v)
	}
}
