package engine

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/contract"
)

// formats are a function's compiled request and response formats, the
// contract its callers and its workers are held to. A nil schema checks
// nothing. Immutable once built.
type formats struct {
	request, response *contract.Schema
}

// ErrRequestFormat marks a call refused, before it was routed, because
// its payload breaks its function's request_format: errors.Is(err,
// ErrRequestFormat) tells the caller's mistake apart from a function's own
// invalid_argument (an HTTP trigger answers 400 for it, 502 for the
// other). The error is an invalid_argument *Error.
var ErrRequestFormat = errors.New("payload breaks the function's request_format")

// RequestFormatError marks e as a request_format refusal (ErrRequestFormat),
// for a transport that carries the mark from another engine.
func RequestFormatError(e *Error) error { return requestRefusal{e} }

type requestRefusal struct{ e *Error }

func (r requestRefusal) Error() string   { return r.e.Error() }
func (r requestRefusal) Unwrap() []error { return []error{r.e, ErrRequestFormat} }

// null is what an absent payload or result is checked as.
var null = []byte("null")

// compileFormats compiles the formats spec carries: nil when it carries
// none or opts out of validation. A format that does not compile, or that
// a limit refuses, is invalid_argument with the compiler's message. An
// opted-out format, and one in iii's own parameter format (which is not
// JSON Schema), is only checked to be JSON within the size limit.
func (e *Engine) compileFormats(id string, spec FunctionSpec) (*formats, error) {
	var f formats
	for _, x := range []struct {
		name string
		src  json.RawMessage
		dst  **contract.Schema
	}{{"request_format", spec.RequestFormat, &f.request}, {"response_format", spec.ResponseFormat, &f.response}} {
		if len(x.src) == 0 {
			continue
		}
		if spec.NoValidation || iiiParameterFormat(x.src) {
			if max := e.cfg.Contracts.Limits().MaxSchemaBytes; len(x.src) > max {
				return nil, Errorf(codes.InvalidArgument, "function %q: %s: %d bytes, over the limit of %d", id, x.name, len(x.src), max)
			}
			if !json.Valid(x.src) {
				return nil, Errorf(codes.InvalidArgument, "function %q: %s is not JSON", id, x.name)
			}
			continue
		}
		s, err := e.cfg.Contracts.Compile(x.src)
		if err != nil {
			return nil, Errorf(codes.InvalidArgument, "function %q: %s: %s", id, x.name, contractMessage(err))
		}
		*x.dst = s
	}
	if f.request == nil && f.response == nil {
		return nil, nil
	}
	return &f, nil
}

// iiiParameterFormat reports whether a format is in iii's own parameter
// format rather than JSON Schema: {name, type, description?, body?,
// items?, required?}, where body lists the fields of an object, required
// is a boolean and type may be "map" (iii's Python RegisterFunctionFormat,
// Node's RegisterFunctionFormat). JSON Schema has no body keyword, a
// boolean required or a type map; a format that names a $schema is JSON
// Schema.
func iiiParameterFormat(src json.RawMessage) bool {
	var f struct {
		Schema   *json.RawMessage `json:"$schema"`
		Type     json.RawMessage  `json:"type"`
		Body     json.RawMessage  `json:"body"`
		Required json.RawMessage  `json:"required"`
	}
	src = bytes.TrimSpace(src)
	if len(src) == 0 || src[0] != '{' || json.Unmarshal(src, &f) != nil || f.Schema != nil {
		return false
	}
	return f.Body != nil || string(f.Type) == `"map"` || string(f.Required) == "true" || string(f.Required) == "false"
}

// checkPayload refuses a payload that breaks the request format.
func (f *formats) checkPayload(c *Call) error {
	if f == nil || f.request == nil {
		return nil
	}
	if err := f.request.Validate(orNull(c.Payload)); err != nil {
		return RequestFormatError(Errorf(codes.InvalidArgument, "payload for %q breaks its request_format: %s", c.FunctionID, contractMessage(err)))
	}
	return nil
}

// checkResult refuses a worker's result that breaks the response format,
// as the worker's handler_error, and logs it under the worker's identity
// (at most once per worker per interval).
func (e *Engine) checkResult(f *formats, h Handler, c *Call, out []byte) error {
	if f == nil || f.response == nil {
		return nil
	}
	err := f.response.Validate(orNull(out))
	if err == nil {
		return nil
	}
	msg := contractMessage(err)
	args := []any{LogFunctionID, c.FunctionID, "error", msg}
	key := "function " + c.FunctionID
	if s, ok := h.(*Session); ok {
		key = "worker " + s.id
		args = append(args, LogWorkerID, s.id, LogWorkerName, s.name())
	}
	e.formatLog.WarnFor(key, "a worker's result breaks its response_format", args...)
	return Errorf(codes.HandlerError, "result of %q breaks its response_format: %s", c.FunctionID, msg)
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return null
	}
	return b
}

// contractMessage is a contract error's message without the package's
// prefix.
func contractMessage(err error) string {
	var ce *contract.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	return err.Error()
}
