package httptrigger

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/trinehq/trine/codes"
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

// httpCodes maps the engine's codes to HTTP's: the one table at this edge.
// A code not listed is the function's own failure: 502 with its code and
// message.
var httpCodes = map[codes.Code]struct {
	status int
	code   string
}{
	codes.FunctionNotFound: {http.StatusNotFound, CodeFunctionNotFound},
	codes.DeadlineExceeded: {http.StatusGatewayTimeout, CodeTimeout},
	codes.Unavailable:      {http.StatusServiceUnavailable, CodeUnavailable},
	codes.Cancelled:        {http.StatusServiceUnavailable, CodeUnavailable},
	codes.Overloaded:       {http.StatusServiceUnavailable, CodeOverloaded},
	codes.Forbidden:        {http.StatusForbidden, CodeForbidden}, // the route's owner may not call it (or the function refused)
}

// callError maps the failure of a call to an engine function.
func callError(err error) *httpError {
	ae := engine.AsError(err)
	if errors.Is(err, engine.ErrRequestFormat) {
		return &httpError{http.StatusBadRequest, CodeBadRequest, ae.Message, false}
	}
	if h, ok := httpCodes[ae.Code]; ok {
		return &httpError{h.status, h.code, ae.Message, false}
	}
	msg := ae.Message
	if ae.Code == codes.Internal {
		msg = "internal error" // details stay in the engine log
	}
	return &httpError{http.StatusBadGateway, string(ae.Code), msg, false}
}
