package httptrigger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Response is what a route's function returns.
type Response struct {
	// StatusCode is the HTTP status, 200 to 599; absent or null means 200.
	StatusCode int `json:"status_code,omitempty"`
	// Headers maps names to values. On the wire a value may also be an
	// array of strings, for a repeated header.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is written as text for a JSON string, as JSON for any other
	// value, and not at all for null or absent.
	Body any `json:"body,omitempty"`
}

// response is a parsed, validated Response.
type response struct {
	status  int
	headers http.Header
	body    []byte
	ctype   string // the default Content-Type of body
}

// managed are the headers the server computes; a function's values for
// them are dropped.
var managed = map[string]bool{"Content-Length": true, "Transfer-Encoding": true, "Connection": true}

// parseResponse validates a function's result.
func parseResponse(out []byte) (*response, error) {
	raw := bytes.TrimSpace(out)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("want a JSON object with status_code, headers and body")
	}
	var in struct {
		StatusCode json.RawMessage            `json:"status_code"`
		Headers    map[string]json.RawMessage `json:"headers"`
		Body       json.RawMessage            `json:"body"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	res := &response{status: http.StatusOK}
	if !isNull(in.StatusCode) {
		status, err := parseStatus(in.StatusCode)
		if err != nil {
			return nil, err
		}
		res.status = status
	}
	headers, err := parseHeaders(in.Headers)
	if err != nil {
		return nil, err
	}
	res.headers = headers
	switch {
	case isNull(in.Body):
	case in.Body[0] == '"':
		var s string
		if err := json.Unmarshal(in.Body, &s); err != nil {
			return nil, fmt.Errorf("decode body: %w", err)
		}
		res.body, res.ctype = []byte(s), "text/plain; charset=utf-8"
	default:
		res.body, res.ctype = in.Body, "application/json"
	}
	return res, nil
}

// parseStatus validates a status_code.
func parseStatus(raw json.RawMessage) (int, error) {
	var status int
	if err := json.Unmarshal(raw, &status); err != nil || status < 200 || status > 599 {
		return 0, fmt.Errorf("status_code %s is not an integer from 200 to 599", bytes.TrimSpace(raw))
	}
	return status, nil
}

// parseHeaders validates the headers of a response: names are tokens,
// values strings or arrays of strings without control characters. The
// managed headers are dropped.
func parseHeaders(in map[string]json.RawMessage) (http.Header, error) {
	h := make(http.Header, len(in))
	for name, v := range in {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("invalid header name %q", name)
		}
		var vs []string
		var one string
		switch {
		case json.Unmarshal(v, &one) == nil && !isNull(v):
			vs = []string{one}
		case json.Unmarshal(v, &vs) == nil && !isNull(v):
		default:
			return nil, fmt.Errorf("header %q: value must be a string or an array of strings", name)
		}
		for _, s := range vs {
			if !validHeaderValue(s) {
				return nil, fmt.Errorf("header %q: invalid value %q", name, s)
			}
		}
		key := http.CanonicalHeaderKey(name)
		if managed[key] {
			continue
		}
		h[key] = append(h[key], vs...)
	}
	return h, nil
}

func (r *response) write(w http.ResponseWriter) {
	h := w.Header()
	for k, vs := range r.headers {
		h[k] = vs
	}
	if len(r.body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", r.ctype)
	}
	if bodyAllowed(r.status) {
		h.Set("Content-Length", strconv.Itoa(len(r.body)))
	}
	w.WriteHeader(r.status)
	if bodyAllowed(r.status) {
		_, _ = w.Write(r.body)
	}
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || bytes.Equal(v, []byte("null"))
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s holds no control character but tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
