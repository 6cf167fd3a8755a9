package httptrigger

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/internal/tracing"
)

// HTTP semantic convention attributes.
const (
	attrMethod = attribute.Key("http.request.method")
	attrRoute  = attribute.Key("http.route")
	attrStatus = attribute.Key("http.response.status_code")
)

// knownMethods are the methods HTTP defines (RFC 9110 and PATCH), which
// name a request's span as they are; any other is _OTHER, as the HTTP
// conventions say.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodConnect: true, http.MethodOptions: true, http.MethodTrace: true,
}

// traceRequest starts the server span of a request (HTTP conventions:
// "{method} {route}" once the route is known), a child of the request's
// W3C traceparent header when it has one, so that a trace begun in the
// browser or a service in front continues through the function. end
// records the status the request was answered with (0: 200).
func (p *Provider) traceRequest(r *http.Request) (*http.Request, func(status int)) {
	name, method := "HTTP", "_OTHER" // a method HTTP does not define: anyone's to choose, up to the header limit
	if knownMethods[r.Method] {
		name, method = r.Method, r.Method
	}
	ctx, span := p.tracer.Start(tracing.Context(r.Context(), r.Header.Get("traceparent")), name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrMethod.String(method)))
	return r.WithContext(ctx), func(status int) {
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(attrStatus.Int(status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
}

// traceRoute names the request's span after the route it matched.
func (p *Provider) traceRoute(span trace.Span, rt *route) {
	if p.tracer == nil {
		return
	}
	span.SetName(rt.method + " " + rt.pattern)
	span.SetAttributes(attrRoute.String(rt.pattern), tracing.TrineFunctionID.String(rt.functionID))
}
