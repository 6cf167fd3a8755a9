// Package otlp is Trine's trace pipeline: the OpenTelemetry SDK's tracer
// provider, batching spans to an OTLP exporter (gRPC or HTTP/protobuf),
// and a forwarder that sends the OTLP JSON iii workers push over their
// /otel socket to the same collector, so that their spans join Trine's
// traces. Only cmd/trine builds one; components receive its
// TracerProvider.
//
// The exporter reads the standard OTEL_EXPORTER_OTLP_* environment
// variables for whatever Config leaves unset, and the SDK reads
// OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and
// OTEL_BSP_*; Config fields win over them.
//
// Concurrency: a Pipeline is safe for concurrent use. New starts the SDK's
// batch goroutine and one forwarding goroutine; Shutdown flushes and stops
// both, and may be called more than once.
package otlp

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trinehq/trine/internal/defaults"
)

// Protocols of the exporter.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// DefaultForwardQueueBytes bounds the forwarded OTLP waiting to be sent.
const DefaultForwardQueueBytes = 4 << 20

// Config configures a Pipeline. The zero Config is valid.
type Config struct {
	// Endpoint is the collector's URL (http://collector:4318 for
	// HTTP, where /v1/traces is added when it has no path;
	// http://collector:4317 for gRPC; http:// means plaintext).
	// Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT, else the exporter's localhost default.
	Endpoint string
	// Protocol is ProtocolGRPC or ProtocolHTTP. Default ProtocolHTTP,
	// the OTLP specification's.
	Protocol string
	// SampleRatio, in [0, 1], samples that share of the traces Trine
	// starts; a trace started upstream keeps its caller's decision.
	// Negative: OTEL_TRACES_SAMPLER decides, else every trace is sampled.
	SampleRatio float64
	// ServiceName names the process in its spans' resource. Default
	// "trine"; OTEL_SERVICE_NAME wins.
	ServiceName string
	// Version is service.version. Default: none.
	Version string
	// ForwardQueueBytes bounds the forwarded OTLP held until it is sent;
	// past it, forwarded messages are dropped. Default
	// DefaultForwardQueueBytes.
	ForwardQueueBytes int
	// Logger receives export failures. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Protocol == "" {
		c.Protocol = ProtocolHTTP
	}
	if c.ServiceName == "" {
		c.ServiceName = "trine"
	}
	defaults.Positive(&c.ForwardQueueBytes, DefaultForwardQueueBytes)
	defaults.Logger(&c.Logger)
	return c
}

// ErrForwardFull reports forwarded spans dropped because the queue was
// full; ErrForwardInvalid, an OTLP message that does not parse.
var (
	ErrForwardFull    = errors.New("otlp: forward queue full")
	ErrForwardInvalid = errors.New("otlp: not OTLP JSON traces")
)

// Pipeline is a running tracer provider and its exporter.
type Pipeline struct {
	cfg    Config
	tp     *sdktrace.TracerProvider
	client otlptrace.Client // nil without an OTLP exporter (NewWithExporter)

	fwdMu     sync.Mutex // held to send on fwd and to close it
	fwdClosed bool
	fwd       chan fwdMsg
	fwdBytes  atomic.Int64 // what fwd holds, in bytes of OTLP JSON
	fwdDone   chan struct{}
	fwdCtx    context.Context // of the uploads; cancelled when Shutdown's deadline passes
	fwdStop   context.CancelFunc
	closeOnce sync.Once
	shutErr   error
}

// fwdMsg is one forwarded message, n bytes of OTLP JSON.
type fwdMsg struct {
	spans []*tracepb.ResourceSpans
	n     int64
}

// New starts a Pipeline exporting over OTLP.
func New(ctx context.Context, cfg Config) (*Pipeline, error) {
	cfg = cfg.withDefaults()
	var client otlptrace.Client
	switch cfg.Protocol {
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(tracesURL(cfg.Endpoint)))
		}
		client = otlptracehttp.NewClient(opts...)
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		}
		client = otlptracegrpc.NewClient(opts...)
	default:
		return nil, fmt.Errorf("otlp: protocol %q: want %s or %s", cfg.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("otlp: start exporter: %w", err)
	}
	p := newPipeline(cfg, sdktrace.WithBatcher(exp))
	p.client = client
	go p.forward()
	return p, nil
}

// tracesURL is the HTTP traces URL of a collector's base URL: as with
// OTEL_EXPORTER_OTLP_ENDPOINT, /v1/traces is added to a URL without a
// path.
func tracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || strings.Trim(u.Path, "/") != "" {
		return endpoint // the exporter reports a bad URL
	}
	u.Path = "/v1/traces"
	return u.String()
}

// NewWithExporter returns a Pipeline that hands each span to exp as it
// ends (tests use an in-memory exporter). It forwards nothing.
func NewWithExporter(exp sdktrace.SpanExporter, cfg Config) *Pipeline {
	p := newPipeline(cfg.withDefaults(), sdktrace.WithSyncer(exp))
	close(p.fwdDone)
	return p
}

func newPipeline(cfg Config, export sdktrace.TracerProviderOption) *Pipeline {
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)), resource.WithFromEnv()}
	if cfg.Version != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(cfg.Version)))
	}
	res, err := resource.New(context.Background(), attrs...)
	if err != nil { // a malformed OTEL_RESOURCE_ATTRIBUTES: keep what parsed
		cfg.Logger.Warn("OpenTelemetry resource attributes partly ignored", "error", err)
	}
	opts := []sdktrace.TracerProviderOption{export, sdktrace.WithResource(res)}
	if cfg.SampleRatio >= 0 {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))))
	}
	fwdCtx, fwdStop := context.WithCancel(context.Background())
	return &Pipeline{cfg: cfg, tp: sdktrace.NewTracerProvider(opts...),
		fwd: make(chan fwdMsg, 64), fwdDone: make(chan struct{}), fwdCtx: fwdCtx, fwdStop: fwdStop}
}

// TracerProvider is what components trace with.
func (p *Pipeline) TracerProvider() trace.TracerProvider { return p.tp }

// Shutdown ends every span still batched (flushing them to the
// collector within ctx) and stops forwarding. It may be called more
// than once.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.fwdMu.Lock()
		p.fwdClosed = true
		if p.client != nil {
			close(p.fwd)
		}
		p.fwdMu.Unlock()
		select {
		case <-p.fwdDone:
		case <-ctx.Done(): // a collector that hangs: drop what is left
			p.fwdStop()
			<-p.fwdDone
		}
		p.fwdStop()
		if ctx.Err() != nil { // still end the batcher, with its own spans dropped
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
		}
		p.shutErr = p.tp.Shutdown(ctx)
	})
	return p.shutErr
}

// ForwardJSON queues the spans of one OTLP/JSON ExportTraceServiceRequest
// (what iii SDKs send behind their "OTLP" prefix) for the collector. It
// never blocks: past ForwardQueueBytes it drops the message with
// ErrForwardFull.
func (p *Pipeline) ForwardJSON(b []byte) error {
	if p.client == nil {
		return nil
	}
	spans, err := DecodeJSON(b)
	if err != nil {
		return err
	}
	m := fwdMsg{spans, int64(len(b))}
	p.fwdMu.Lock()
	defer p.fwdMu.Unlock()
	if p.fwdClosed || p.fwdBytes.Load()+m.n > int64(p.cfg.ForwardQueueBytes) {
		return ErrForwardFull
	}
	select {
	case p.fwd <- m:
		p.fwdBytes.Add(m.n)
		return nil
	default:
		return ErrForwardFull
	}
}

// forward uploads forwarded spans until Shutdown.
func (p *Pipeline) forward() {
	defer close(p.fwdDone)
	for m := range p.fwd {
		if p.fwdCtx.Err() != nil {
			p.fwdBytes.Add(-m.n)
			continue
		}
		if err := p.client.UploadTraces(p.fwdCtx, m.spans); err != nil {
			p.cfg.Logger.Warn("forwarded spans not exported", "error", err)
		}
		p.fwdBytes.Add(-m.n)
	}
}

// DecodeJSON reads an OTLP/JSON ExportTraceServiceRequest. As OTLP/JSON
// asks, trace and span ids are hex, not the base64 of protobuf's JSON.
func DecodeJSON(b []byte) ([]*tracepb.ResourceSpans, error) {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForwardInvalid, err)
	}
	if err := hexIDs(doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForwardInvalid, err)
	}
	fixed, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForwardInvalid, err)
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(fixed, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForwardInvalid, err)
	}
	return req.GetResourceSpans(), nil
}

// hexIDs rewrites every traceId, spanId and parentSpanId in v from hex to
// base64.
func hexIDs(v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
				raw, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %q is not hex", k, s)
				}
				v[k] = base64.StdEncoding.EncodeToString(raw)
				continue
			}
			if err := hexIDs(x); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := hexIDs(x); err != nil {
				return err
			}
		}
	}
	return nil
}
