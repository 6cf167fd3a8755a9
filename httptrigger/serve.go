package httptrigger

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// RequestHead is the request without its body: what a middleware
// function sees, and the start of what a route's function receives.
type RequestHead struct {
	// Path is the route's pattern, normalised with a leading slash.
	Path string `json:"path"`
	// Method is the request's method (that of the route).
	Method string `json:"method"`
	// Headers maps lowercased names to values; repeated headers are joined
	// with ", ". The Host header is included as "host".
	Headers map[string]string `json:"headers"`
	// QueryParams maps names to a string, or to an array of strings when
	// the name is repeated.
	QueryParams map[string]any `json:"query_params"`
	// PathParams maps the route's parameter names to decoded values.
	PathParams map[string]string `json:"path_params"`
}

// Request is the payload a route's function (and its condition function)
// receives.
type Request struct {
	RequestHead
	// Body is the parsed JSON body, a JSON string for a text body, or null.
	Body json.RawMessage `json:"body"`
	// Trigger describes the trigger that fired.
	Trigger TriggerInfo `json:"trigger"`
	// RequestBody is the read end of a data channel carrying the raw
	// request body as binary frames (a function may ignore it), and
	// Response the write end of a channel into which the function may
	// stream its response. Both are absent when the Provider has no
	// Config.Channels, and in the condition function's payload.
	RequestBody *channels.Ref `json:"request_body,omitempty"`
	Response    *channels.Ref `json:"response,omitempty"`
}

// TriggerInfo is the "trigger" member of a Request.
type TriggerInfo struct {
	Type   string `json:"type"`
	Path   string `json:"path"`
	Method string `json:"method"`
}

// ServeHTTP answers a request to a registered route by calling its
// function; every failure is answered in the JSON error envelope.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	if p.tracer != nil {
		var end func(status int)
		r, end = p.traceRequest(r)
		defer func() { end(sw.status) }()
	}
	deadline := time.Now().Add(p.cfg.Timeout)
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	if he := p.serve(ctx, sw, r, deadline); he != nil {
		writeError(sw, he)
	}
	p.responses.add(sw.status)
}

// statusWriter notes the status a response is sent with.
// http.ResponseController reaches the writer under it through Unwrap.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusCounts counts responses by status code.
type statusCounts [600]atomic.Int64

// add counts a response with status; 0 (nothing written) is the 200
// net/http sends.
func (c *statusCounts) add(status int) {
	if status == 0 {
		status = http.StatusOK
	}
	if status >= 100 && status < len(c) {
		c[status].Add(1)
	}
}

// Stats is a snapshot of the provider's counters.
type Stats struct {
	// Responses counts the answers sent, by HTTP status code.
	Responses map[int]int64
}

// Stats returns the provider's counters.
func (p *Provider) Stats() Stats {
	st := Stats{Responses: map[int]int64{}}
	for code := range p.responses {
		if n := p.responses[code].Load(); n > 0 {
			st.Responses[code] = n
		}
	}
	return st
}

func (p *Provider) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, deadline time.Time) *httpError {
	segs, ok := splitRequestPath(r.URL.EscapedPath())
	if !ok {
		return &httpError{status: http.StatusNotFound, code: CodeNotFound, message: "no route for " + r.URL.Path}
	}
	rt, params, allowed := p.table.Load().match(r.Method, segs)
	if rt == nil {
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			return &httpError{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
				message: "method " + r.Method + " is not allowed for " + r.URL.Path + " (allowed: " + strings.Join(allowed, ", ") + ")"}
		}
		return &httpError{status: http.StatusNotFound, code: CodeNotFound, message: "no route for " + r.URL.Path}
	}
	p.traceRoute(trace.SpanFromContext(ctx), rt)
	streamed := rt.maxBody > p.cfg.MaxBodyBytes
	var raw []byte
	var body json.RawMessage
	if streamed {
		if r.ContentLength > rt.maxBody {
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			return &httpError{status: http.StatusRequestEntityTooLarge, code: CodePayloadTooLarge,
				message: "request body is larger than " + formatBytes(rt.maxBody) + " (the route's max_body_bytes)"}
		}
	} else {
		limit := p.cfg.MaxBodyBytes
		if rt.maxBody > 0 {
			limit = rt.maxBody
		}
		var he *httpError
		if raw, body, he = p.readBody(w, r, deadline, limit); he != nil {
			return he
		}
	}
	req := Request{
		RequestHead: RequestHead{Path: rt.pattern, Method: rt.method, Headers: requestHeaders(r), QueryParams: queryParams(r), PathParams: params},
		Body:        body,
		Trigger:     TriggerInfo{Type: TriggerType, Path: rt.pattern, Method: rt.method},
	}
	log := p.log.With(engine.LogTriggerID, rt.triggerID, "method", rt.method, "path", rt.pattern)
	if rt.condition != "" {
		payload, err := json.Marshal(req) // never with channel refs
		if err != nil {                   // cannot happen: body is valid JSON
			return errInternal
		}
		ok, err := p.e.Condition(ctx, rt.trigger, rt.condition, engine.Call{Payload: payload, Metadata: rt.metadata})
		if err != nil {
			log.Debug("http condition function failed", engine.LogFunctionID, rt.condition, "error", err)
			return callError(err)
		}
		if !ok {
			return &httpError{status: http.StatusUnprocessableEntity, code: CodeConditionNotMet,
				message: "condition function " + rt.condition + " returned false", skipped: true}
		}
	}
	for _, mw := range rt.middleware {
		if done, he := p.middleware(ctx, w, rt, mw, req, log); done || he != nil {
			return he
		}
	}
	log = log.With(engine.LogFunctionID, rt.functionID)
	if p.cfg.Channels != nil {
		if streamed {
			return p.serveChannels(ctx, w, r, rt, req, nil, deadline, log)
		}
		return p.serveChannels(ctx, w, r, rt, req, raw, deadline, log)
	}
	payload, err := json.Marshal(req)
	if err != nil { // cannot happen: body is valid JSON
		return errInternal
	}
	out, err := p.e.Fire(ctx, rt.trigger, engine.Call{FunctionID: rt.functionID, Payload: payload, Metadata: rt.metadata})
	if err != nil {
		return functionFailed(ctx, log, err)
	}
	return writeResult(w, rt, out, log)
}

// MiddlewareInput is what a route's middleware function receives, iii's
// shape: the request without its body, and the (empty) auth context.
type MiddlewareInput struct {
	Phase   string         `json:"phase"` // always "preHandler"
	Request RequestHead    `json:"request"`
	Context map[string]any `json:"context"`
}

// middleware runs one middleware function: {"action":"continue"} goes on,
// {"action":"respond","response":{status_code, body, headers}} answers
// the request (done), and anything else, or a failure, answers an error
// without calling the route's function: the chain fails closed.
func (p *Provider) middleware(ctx context.Context, w http.ResponseWriter, rt *route, fn string, req Request, log *slog.Logger) (done bool, he *httpError) {
	in, err := json.Marshal(MiddlewareInput{Phase: "preHandler", Context: map[string]any{},
		Request: req.RequestHead})
	if err != nil {
		return true, errInternal
	}
	out, err := p.e.Fire(ctx, rt.trigger, engine.Call{FunctionID: fn, Payload: in, Metadata: rt.metadata})
	if err != nil {
		log.Debug("http middleware failed", engine.LogFunctionID, fn, "error", err)
		return true, callError(err)
	}
	var r struct {
		Action   string          `json:"action"`
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(out, &r); err == nil {
		switch r.Action {
		case "continue":
			return false, nil
		case "respond":
			res, err := parseResponse(r.Response)
			if err == nil {
				res.write(w)
				return true, nil
			}
			out = []byte(err.Error())
		}
	}
	log.Debug("http middleware returned an invalid result", engine.LogFunctionID, fn, "result", truncate(out, 200))
	return true, &httpError{status: http.StatusBadGateway, code: CodeInvalidResponse,
		message: "middleware " + fn + ` returned neither {"action":"continue"} nor {"action":"respond","response":{…}}`}
}

var errInternal = &httpError{status: http.StatusInternalServerError, code: CodeInternal, message: "internal error"}

// functionFailed logs and maps the failure of the trigger's function.
func functionFailed(ctx context.Context, log *slog.Logger, err error) *httpError {
	level := slog.LevelDebug
	if engine.AsError(err).Code == codes.Internal {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "http function failed", "error", err)
	return callError(err)
}

// writeResult answers with the response the function returned.
func writeResult(w http.ResponseWriter, rt *route, out []byte, log *slog.Logger) *httpError {
	res, err := parseResponse(out)
	if err != nil {
		log.Debug("http function returned an invalid response", "error", err)
		return &httpError{status: http.StatusBadGateway, code: CodeInvalidResponse,
			message: "function " + rt.functionID + " returned an invalid response: " + err.Error()}
	}
	res.write(w)
	return nil
}

// readBody reads the request body, bounded by MaxBodyBytes and, for the
// time it takes, by deadline; it returns it as is (raw) and as a JSON value
// (nil for none).
func (p *Provider) readBody(w http.ResponseWriter, r *http.Request, deadline time.Time, limit int64) (raw []byte, body json.RawMessage, he *httpError) {
	tooLarge := &httpError{status: http.StatusRequestEntityTooLarge, code: CodePayloadTooLarge,
		message: "request body is larger than " + formatBytes(limit)}
	rc := http.NewResponseController(w)
	bounded := rc.SetReadDeadline(deadline) == nil
	// When the body is refused or not read to its end, an HTTP/1
	// connection is not reused (so net/http does not wait to drain it), and
	// the read deadline stays, bounding what net/http still reads after the
	// answer.
	dropConn := func() {
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
	}
	if r.ContentLength > limit {
		dropConn()
		return nil, nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		dropConn()
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, nil, tooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, nil, &httpError{status: http.StatusRequestTimeout, code: CodeRequestTimeout, message: "request body not received in time"}
		default:
			return nil, nil, &httpError{status: http.StatusBadRequest, code: CodeBadRequest, message: "read request body: " + err.Error()}
		}
	}
	if bounded {
		// The connection outlives this request: lift the deadline at once.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if len(b) == 0 {
		return nil, nil, nil
	}
	if isJSON(r.Header.Get("Content-Type")) {
		if err := engine.ValidJSONText(b); err != nil {
			return nil, nil, &httpError{status: http.StatusBadRequest, code: CodeInvalidJSON, message: "request body is " + err.Error()}
		}
		return b, b, nil
	}
	if !utf8.Valid(b) {
		if p.cfg.Channels != nil {
			return b, nil, nil // binary: the function reads it from request_body; body is null
		}
		return nil, nil, &httpError{status: http.StatusUnsupportedMediaType, code: CodeUnsupportedMediaType,
			message: "a request body that is not JSON must be UTF-8 text (or use Config.Channels: request_body)"}
	}
	s, err := json.Marshal(string(b))
	if err != nil { // cannot happen for a string
		return nil, nil, errInternal
	}
	return b, s, nil
}

// isJSON reports whether a request's Content-Type calls for a JSON body:
// absent, application/json, or any */*+json type.
func isJSON(contentType string) bool {
	if strings.TrimSpace(contentType) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt, _, _ = strings.Cut(strings.ToLower(contentType), ";")
		mt = strings.TrimSpace(mt)
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func requestHeaders(r *http.Request) map[string]string {
	h := make(map[string]string, len(r.Header)+1)
	for name, vs := range r.Header {
		h[strings.ToLower(name)] = strings.Join(vs, ", ")
	}
	if r.Host != "" {
		h["host"] = r.Host
	}
	return h
}

func queryParams(r *http.Request) map[string]any {
	q := r.URL.Query()
	out := make(map[string]any, len(q))
	for name, vs := range q {
		if len(vs) == 1 {
			out[name] = vs[0]
		} else {
			out[name] = vs
		}
	}
	return out
}

func formatBytes(n int64) string {
	return strconv.FormatInt(n, 10) + " bytes"
}
