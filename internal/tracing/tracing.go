// Package tracing holds what Trine's packages share to make OpenTelemetry
// spans: the instrumentation scope, the W3C traceparent spelling the wire
// carries (worker calls, NATS headers, http triggers), and the attribute
// keys of the messaging and RPC semantic conventions Trine uses. It
// imports only the OpenTelemetry API; the SDK and the OTLP exporter live
// in tracing/otlp, which only cmd/trine wires.
//
// A component is traced when its Config carries a TracerProvider; with
// none, Tracer returns nil and the component skips every tracing call, so
// tracing off costs one nil check per operation.
//
// Concurrency: every function is pure and safe to call concurrently; the
// package starts no goroutines.
package tracing

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of Trine's spans.
const Scope = "github.com/trinehq/trine"

// Tracer returns tp's tracer for Trine, or nil when tp is nil (tracing
// off).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(Scope)
}

// Attribute keys (OpenTelemetry semantic conventions, messaging and RPC).
const (
	RPCSystem            = attribute.Key("rpc.system")
	RPCMethod            = attribute.Key("rpc.method")
	MessagingSystem      = attribute.Key("messaging.system")
	MessagingOperation   = attribute.Key("messaging.operation.type")
	MessagingOperationNm = attribute.Key("messaging.operation.name")
	MessagingDestination = attribute.Key("messaging.destination.name")
	MessagingBodySize    = attribute.Key("messaging.message.body.size")
	ErrorType            = attribute.Key("error.type")
	TrineFunctionID      = attribute.Key("trine.function_id")
	TrineInvocationID    = attribute.Key("trine.invocation_id")
	TrineTriggerID       = attribute.Key("trine.trigger_id")
	TrineStream          = attribute.Key("trine.stream")
	TrineGroup           = attribute.Key("trine.group")
	TrineSeq             = attribute.Key("trine.seq")
	TrineSubscriberCount = attribute.Key("trine.subscriber_count")
	TrineOutcome         = attribute.Key("trine.outcome")
)

// Common attribute values.
var (
	SystemTrine = RPCSystem.String("trine")
	SystemNATS  = MessagingSystem.String("nats")
)

// End ends span with code as its outcome ("" for success): a failure sets
// the error status and error.type, as the RPC conventions ask.
func End(span trace.Span, code string) {
	if code == "" {
		span.SetAttributes(TrineOutcome.String("ok"))
	} else {
		span.SetAttributes(TrineOutcome.String(code), ErrorType.String(code))
		span.SetStatus(codes.Error, code)
	}
	span.End()
}

// Traceparent is the W3C traceparent header of sc, "" when sc is invalid.
func Traceparent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	copy(b[:], "00-")
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags())})
	return string(b[:])
}

// Parse reads a W3C traceparent header (version 00, or a later version's
// first 55 bytes as the spec asks); it returns an invalid SpanContext for
// anything else.
func Parse(h string) trace.SpanContext {
	if len(h) < 55 || (len(h) > 55 && (h[:2] == "00" || h[55] != '-')) || h[2] != '-' || h[35] != '-' || h[52] != '-' || h[:2] == "ff" {
		return trace.SpanContext{}
	}
	var ver [1]byte
	if _, err := hex.Decode(ver[:], []byte(h[:2])); err != nil {
		return trace.SpanContext{}
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !lowerHex(h[3:35]) || !lowerHex(h[36:52]) || !lowerHex(h[53:55]) {
		return trace.SpanContext{}
	}
	if _, err := hex.Decode(tid[:], []byte(h[3:35])); err != nil {
		return trace.SpanContext{}
	}
	if _, err := hex.Decode(sid[:], []byte(h[36:52])); err != nil {
		return trace.SpanContext{}
	}
	if _, err := hex.Decode(flags[:], []byte(h[53:55])); err != nil {
		return trace.SpanContext{}
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, Remote: true})
	if !sc.IsValid() {
		return trace.SpanContext{}
	}
	return sc
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Context returns ctx as the parent of the next span: ctx itself when it
// carries a span, else ctx with the remote parent traceparent names (if
// it parses).
func Context(ctx context.Context, traceparent string) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() || traceparent == "" {
		return ctx
	}
	if sc := Parse(traceparent); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

// FromContext is the traceparent of ctx's span, "" when it has none.
func FromContext(ctx context.Context) string {
	return Traceparent(trace.SpanContextFromContext(ctx))
}
