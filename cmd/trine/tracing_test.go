package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/tracing/otlptest"
	trine "github.com/trinehq/trine/worker-sdk"
)

// tracedEnv is the environment of an engine that exports spans at once.
func tracedEnv(extra ...string) []string {
	return testEnv(append([]string{"OTEL_BSP_SCHEDULE_DELAY=50"}, extra...)...)
}

// TestEngineTracesOverOTLP: with --otel-endpoint, a write a worker makes
// reaches the collector as one trace from the engine's routing of the
// call to the gateway's delivery to a WebSocket; an http trigger request
// with a traceparent header continues the caller's trace; and the OTLP
// JSON an iii worker pushes on /otel reaches the same collector.
func TestEngineTracesOverOTLP(t *testing.T) {
	t.Parallel()
	col := otlptest.NewCollector(t)
	e := startEngine(t, trineBin, tracedEnv(), engineArgs(t, "--otel-endpoint", col.URL)...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+e.stream+"/stream/chat/room", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil { // sync
		t.Fatal(err)
	}
	// The trace starts in this process: the worker's call carries its
	// context.
	const writer = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	wctx := trace.ContextWithRemoteSpanContext(ctx, tracing.Parse(writer))
	if _, err := w.Trigger(wctx, "stream::set", map[string]any{"stream_name": "chat", "group_id": "room", "item_id": "m1", "data": "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil { // create
		t.Fatal(err)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the write's four spans at the collector", func() bool {
		return len(col.Named("stream::set")) == 1 && len(col.Named("commit chat")) == 1 && len(col.Named("send chat")) == 1 && len(col.Named("process chat")) == 1
	}))
	routing, commit, send, deliver := col.Named("stream::set"), col.Named("commit chat"), col.Named("send chat"), col.Named("process chat")
	if len(routing) != 1 || len(commit) != 1 || len(send) != 1 {
		t.Fatalf("spans %v", col.Spans())
	}
	wr := tracing.Parse(writer)
	wrTrace, wrSpan := wr.TraceID(), wr.SpanID()
	if !bytes.Equal(routing[0].GetTraceId(), wrTrace[:]) || !bytes.Equal(routing[0].GetParentSpanId(), wrSpan[:]) {
		t.Errorf("routing span %x/%x, want a child of the worker's %s", routing[0].GetTraceId(), routing[0].GetParentSpanId(), writer)
	}
	for _, l := range []struct {
		name          string
		child, parent otlptest.Span
	}{{"commit", commit[0], routing[0]}, {"publish", send[0], commit[0]}, {"delivery", deliver[0], send[0]}} {
		if !bytes.Equal(l.child.GetTraceId(), routing[0].GetTraceId()) || !bytes.Equal(l.child.GetParentSpanId(), l.parent.GetSpanId()) {
			t.Errorf("%s span %x/%x is not a child of %s %x/%x", l.name, l.child.GetTraceId(), l.child.GetParentSpanId(), l.parent.GetName(), l.parent.GetTraceId(), l.parent.GetSpanId())
		}
	}
	if routing[0].Service != "trine" {
		t.Errorf("service.name = %q, want trine", routing[0].Service)
	}

	// An http trigger continues the trace its request names.
	const upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := w.RegisterFunction(ctx, "t::hello", func(context.Context, json.RawMessage) (any, error) { return map[string]any{"body": "hi"}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterTrigger(ctx, trine.Trigger{ID: "hello", Type: "http", FunctionID: "t::hello", Config: json.RawMessage(`{"api_path":"hello","http_method":"GET"}`)}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", e.http+"/hello", nil)
	req.Header.Set("traceparent", upstream)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /hello = %d", res.StatusCode)
	}
	up := tracing.Parse(upstream)
	upTrace, upSpan := up.TraceID(), up.SpanID()
	poll.CheckFor(t, 10*time.Second, poll.Holds("the request span at the collector", func() bool { return len(col.Named("GET /hello")) == 1 }))
	if s := col.Named("GET /hello")[0]; !bytes.Equal(s.GetTraceId(), upTrace[:]) || !bytes.Equal(s.GetParentSpanId(), upSpan[:]) {
		t.Errorf("request span %x/%x, want a child of %s", s.GetTraceId(), s.GetParentSpanId(), upstream)
	}

	// An iii worker's spans, pushed on /otel, join them.
	o, _, err := websocket.Dial(ctx, "ws://"+e.iii+"/otel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.CloseNow()
	msg := `OTLP{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"iii-node"}}]},"scopeSpans":[{"spans":[{"traceId":"` +
		hex.EncodeToString(upTrace[:]) + `","spanId":"0102030405060708","parentSpanId":"` + hex.EncodeToString(upSpan[:]) + `","name":"iii handler","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}`
	if err := o.Write(ctx, websocket.MessageBinary, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the iii worker's span at the collector", func() bool { return len(col.Named("iii handler")) == 1 }))
	if s := col.Named("iii handler")[0]; s.Service != "iii-node" || !bytes.Equal(s.GetTraceId(), upTrace[:]) {
		t.Errorf("forwarded span from %q in trace %x", s.Service, s.GetTraceId())
	}
	if code, body := get(t, e.http+"/metrics"); code != 200 || !strings.Contains(body, "trine_iii_telemetry_forwarded_total 1") {
		t.Errorf("GET /metrics = %d, want one forwarded frame:\n%.3000s", code, body)
	}
}

// TestEngineTracingOffByDefault: without --otel-endpoint or an OTEL_*
// endpoint the engine exports nothing, and OTEL_SDK_DISABLED=true wins
// over an endpoint; an iii worker's telemetry is dropped and counted.
func TestEngineTracingOffByDefault(t *testing.T) {
	t.Parallel()
	col := otlptest.NewCollector(t)
	e := startEngine(t, trineBin, tracedEnv("OTEL_EXPORTER_OTLP_ENDPOINT="+col.URL, "OTEL_SDK_DISABLED=true"), engineArgs(t)...)
	w := connectWorker(t, e.grpc)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if _, err := w.Trigger(ctx, "stream::set", map[string]any{"stream_name": "chat", "group_id": "room", "item_id": "m1", "data": "hi"}); err != nil {
		t.Fatal(err)
	}
	o, _, err := websocket.Dial(ctx, "ws://"+e.iii+"/otel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.CloseNow()
	if err := o.Write(ctx, websocket.MessageBinary, []byte(`OTLP{"resourceSpans":[]}`)); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the dropped frame counted", func() bool {
		_, body := get(t, e.http+"/metrics")
		return strings.Contains(body, "trine_iii_telemetry_dropped_total 1")
	}))
	if s := col.Spans(); len(s) != 0 {
		t.Errorf("tracing off, the collector got %d spans", len(s))
	}
}

// TestOTelSettings: tracing is on with --otel-endpoint or a standard
// OTEL_* endpoint, off without, and OTEL_SDK_DISABLED or
// OTEL_TRACES_EXPORTER=none keep it off; the protocol comes from the flag,
// else the standard variables; bad values are usage errors.
func TestOTelSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		on    bool
		proto string
		ratio float64
	}{
		{"off by default", nil, nil, false, "", -1},
		{"flag", []string{"--otel-endpoint", "http://c:4318", "--otel-sample-ratio", "0.25"}, nil, true, "", 0.25},
		{"standard endpoint", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, "grpc", -1},
		{"traces endpoint", nil, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true, "", -1},
		{"exporter otlp", nil, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, "", -1},
		{"flag protocol wins", []string{"--otel-protocol", "http/protobuf"}, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "otlp"}, true, "http/protobuf", -1},
		{"disabled", []string{"--otel-endpoint", "http://c:4318"}, map[string]string{"OTEL_SDK_DISABLED": "true"}, false, "", -1},
		{"exporter none", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false, "", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseEngineConfig(tt.args, mapEnv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.OTel.On != tt.on || c.OTel.Protocol != tt.proto || c.OTel.Ratio != tt.ratio {
				t.Errorf("OTel = %+v, want on %v, protocol %q, ratio %v", c.OTel, tt.on, tt.proto, tt.ratio)
			}
		})
	}
	for _, bad := range [][]string{{"--otel-endpoint", "collector:4318"}, {"--otel-protocol", "http/json"}, {"--otel-sample-ratio", "2"}} {
		var ue *usageError
		if _, err := parseEngineConfig(bad, mapEnv(nil)); !errors.As(err, &ue) {
			t.Errorf("parseEngineConfig(%q) = %v, want a usage error", bad, err)
		}
	}
}
