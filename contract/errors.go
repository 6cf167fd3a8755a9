package contract

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/trinehq/trine/codes"
)

// The codes contract errors carry: the engine's error codes (package
// codes holds the one list).
const (
	CodeInvalidArgument = string(codes.InvalidArgument)
	CodeConflict        = string(codes.Conflict)
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidSchema: a schema was refused (does not compile, over a
	// limit, remote $ref, too costly to evaluate).
	ErrInvalidSchema = errors.New("contract: invalid schema")
	// ErrInvalidValue: a value does not satisfy its schema.
	ErrInvalidValue = errors.New("contract: invalid value")
	// ErrInvalidDefinition: a definition is malformed (no stream, version
	// 0, unknown mode, bad event type name, too many event types).
	ErrInvalidDefinition = errors.New("contract: invalid definition")
	// ErrVersion: a definition's version is not above the stream's last.
	ErrVersion = errors.New("contract: version not above the last")
	// ErrHistoryFull: a stream's history holds as many definitions, or
	// bytes of schemas, as Limits allow.
	ErrHistoryFull = errors.New("contract: history full")
	// ErrIncompatible: a definition breaks the stream's compatibility mode.
	ErrIncompatible = errors.New("contract: incompatible")
	// ErrUnknownEventType: a stream that declares event types was sent one
	// it does not declare.
	ErrUnknownEventType = errors.New("contract: undeclared event type")
)

// Error is a refusal with a stable code. Problems lists what failed, first
// ones first, each as "pointer: rule"; Message is them joined, bounded.
type Error struct {
	code     string
	kind     error
	Message  string
	Problems []string
}

func (e *Error) Error() string { return e.Message }

// Code is the stable code: invalid_argument or conflict.
func (e *Error) Code() string { return e.code }

// Unwrap returns the sentinel the error is an instance of.
func (e *Error) Unwrap() error { return e.kind }

func newError(code string, kind error, prefix string, problems []string, maxBytes int) *Error {
	msg := strings.Join(problems, "; ")
	if prefix != "" {
		msg = prefix + ": " + msg
	}
	return &Error{code: code, kind: kind, Message: truncate(msg, maxBytes), Problems: problems}
}

func invalidSchema(format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{code: CodeInvalidArgument, kind: ErrInvalidSchema, Message: "schema refused: " + msg, Problems: []string{msg}}
}

func invalidDefinition(format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{code: CodeInvalidArgument, kind: ErrInvalidDefinition, Message: "definition refused: " + msg, Problems: []string{msg}}
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 3 {
		return ""
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
