package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/internal/tracing/otlp"
)

// otelConfig are the --otel-* settings, with what the standard OTEL_*
// variables say. Tracing is off unless an endpoint is named (by
// --otel-endpoint, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT) or OTEL_TRACES_EXPORTER is otlp; and
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keeps it off.
type otelConfig struct {
	Endpoint string
	Protocol string  // "": OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, else http/protobuf
	Ratio    float64 // negative: OTEL_TRACES_SAMPLER decides
	// ForwardBytesPerSecond bounds the OTLP iii workers forward.
	ForwardBytesPerSecond int
	On                    bool

	// provider and telemetry are the running pipeline's, set once it
	// starts; nil: off.
	provider  trace.TracerProvider
	telemetry iiiserver.Telemetry
}

// otelSettings are the keys of tracing, each set into its field of c.
func otelSettings(c *engineConfig) []setting {
	return []setting{
		row("otel-endpoint", "URL", "", "turn tracing on and export spans over OTLP to this collector (http://HOST:4318 for http/protobuf, http://HOST:4317 for grpc; https:// for TLS); none: OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_* variables decide, and without them tracing is off", &c.OTel.Endpoint, otelEndpoint),
		row("otel-protocol", "PROTOCOL", "", "OTLP protocol of the trace exporter, grpc or http/protobuf; none: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf", &c.OTel.Protocol, oneOf("must be grpc or http/protobuf", "", otlp.ProtocolGRPC, otlp.ProtocolHTTP)),
		row("otel-sample-ratio", "RATIO", "", "share of the traces the engine starts that are sampled, from 0 to 1 (a trace begun upstream keeps its caller's decision); none: OTEL_TRACES_SAMPLER, else all", &c.OTel.Ratio, sampleRatio),
		row("otel-forward-bytes-per-second", "N", strconv.Itoa(iiiserver.DefaultTelemetryBytesPerSecond), "OTLP trace bytes a second the engine forwards from iii workers (OTLP frames on /otel or their worker socket) to the collector, all connections together, with a burst of --max-message-bytes and at most 4 seconds of it waiting; more is dropped and counted in trine_iii_telemetry_dropped_total (see docs/observability.md)", &c.OTel.ForwardBytesPerSecond, positiveInt),
	}
}

// otelEndpoint is a collector's http:// or https:// URL, or none.
func otelEndpoint(v string) (string, error) {
	if v == "" {
		return v, nil
	}
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("must be an http:// or https:// URL")
	}
	return v, nil
}

// sampleRatio is a ratio from 0 to 1, or none (-1).
func sampleRatio(v string) (float64, error) {
	if v == "" {
		return -1, nil
	}
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || r < 0 || r > 1 {
		return 0, errors.New("must be a number from 0 to 1")
	}
	return r, nil
}

// resolveOTel decides whether tracing is on, from the settings and the
// standard variables.
func resolveOTel(c *otelConfig, env func(string) (string, bool)) {
	exporter, _ := env("OTEL_TRACES_EXPORTER")
	disabled, _ := env("OTEL_SDK_DISABLED")
	_, traces := env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	_, any := env("OTEL_EXPORTER_OTLP_ENDPOINT")
	c.On = c.Endpoint != "" || traces || any || strings.TrimSpace(exporter) == "otlp"
	if strings.EqualFold(strings.TrimSpace(disabled), "true") || strings.TrimSpace(exporter) == "none" {
		c.On = false
	}
	if c.Protocol == "" {
		for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
			if v, ok := env(k); ok {
				c.Protocol = strings.TrimSpace(v)
				break
			}
		}
	}
}

// startTracing starts the trace pipeline when tracing is on (nil when
// off) and gives c the pipeline's provider and forwarder. The pipeline's
// Shutdown flushes what it holds.
func startTracing(ctx context.Context, c *otelConfig, log *slog.Logger) (*otlp.Pipeline, error) {
	if !c.On {
		return nil, nil
	}
	p, err := otlp.New(ctx, otlp.Config{Endpoint: c.Endpoint, Protocol: c.Protocol, SampleRatio: c.Ratio, Version: version, Logger: log,
		ForwardQueueBytes: forwardQueueSeconds * c.ForwardBytesPerSecond})
	if err != nil {
		return nil, fmt.Errorf("start tracing: %w", err)
	}
	// The SDK reports export failures to otel's one error handler; the
	// process has one engine (or gateway), whose log takes them.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("spans not exported", "error", err) }))
	log.Info("tracing on", "endpoint", c.Endpoint, "protocol", c.Protocol)
	c.provider, c.telemetry = p.TracerProvider(), p
	return p, nil
}

// stopTracing flushes and stops p, bounded by traceFlushTimeout.
func stopTracing(p *otlp.Pipeline, log *slog.Logger) {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		log.Warn("spans not flushed", "error", err)
	}
}

// forwardQueueSeconds is how many seconds of --otel-forward-bytes-per-second
// the forwarded OTLP may wait for the collector.
const forwardQueueSeconds = 4

// traceFlushTimeout bounds the last export of spans at shutdown.
const traceFlushTimeout = 5 * time.Second

// telemetryStats count the telemetry iii workers send.
func telemetryStats(s *iiiserver.Server) stats {
	return stats{
		counter("trine_iii_telemetry_forwarded_total", "OTLP trace frames of iii workers forwarded to the trace collector.",
			func() float64 { return float64(s.TelemetryForwarded()) }),
		counter("trine_iii_telemetry_dropped_total", "Telemetry frames of iii workers dropped: metrics and logs, traces while tracing is off, over --otel-forward-bytes-per-second, or refused by a full export queue.",
			func() float64 { return float64(s.TelemetryDropped()) }),
	}
}
