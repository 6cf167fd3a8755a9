package httptrigger

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/trinehq/trine/engine"
)

// The codes of the error envelope written by the provider itself. Errors
// reported by a function keep the function's own code.
const (
	CodeNotFound             = "NOT_FOUND"
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"
	CodeBadRequest           = "BAD_REQUEST"
	CodeInvalidJSON          = "INVALID_JSON"
	CodeRequestTimeout       = "REQUEST_TIMEOUT"
	CodePayloadTooLarge      = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	CodeConditionNotMet      = "CONDITION_NOT_MET"
	CodeFunctionNotFound     = "FUNCTION_NOT_FOUND"
	CodeInvalidResponse      = "INVALID_RESPONSE"
	CodeUnavailable          = "UNAVAILABLE"
	CodeOverloaded           = "OVERLOADED"
	CodeForbidden            = "FORBIDDEN"
	CodeTimeout              = "TIMEOUT"
	CodeInternal             = "INTERNAL_ERROR"
)

// httpError is an answer in the error envelope.
type httpError struct {
	status  int
	code    string
	message string
	skipped bool // the condition function skipped the handler
}

type envelope struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Skipped bool `json:"skipped,omitempty"`
}

func writeError(w http.ResponseWriter, e *httpError) {
	var env envelope
	env.Error.Code, env.Error.Message, env.Skipped = e.code, e.message, e.skipped
	b, err := json.Marshal(env)
	if err != nil { // cannot happen: strings and a bool
		b = []byte(`{"error":{"code":"INTERNAL_ERROR","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// callError maps the failure of a call to an engine function.
func callError(err error) *httpError {
	ae := engine.AsError(err)
	switch ae.Code {
	case engine.CodeFunctionNotFound:
		return &httpError{http.StatusNotFound, CodeFunctionNotFound, ae.Message, false}
	case engine.CodeDeadlineExceeded:
		return &httpError{http.StatusGatewayTimeout, CodeTimeout, ae.Message, false}
	case engine.CodeUnavailable, engine.CodeCancelled:
		return &httpError{http.StatusServiceUnavailable, CodeUnavailable, ae.Message, false}
	case engine.CodeOverloaded:
		return &httpError{http.StatusServiceUnavailable, CodeOverloaded, ae.Message, false}
	case engine.CodeForbidden: // the route's owner may not call it (or the function refused)
		return &httpError{http.StatusForbidden, CodeForbidden, ae.Message, false}
	case engine.CodeInternal:
		return &httpError{http.StatusBadGateway, string(ae.Code), "internal error", false}
	default: // the function failed: keep its code and message
		return &httpError{http.StatusBadGateway, string(ae.Code), ae.Message, false}
	}
}
