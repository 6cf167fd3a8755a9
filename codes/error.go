package codes

import (
	"context"
	"errors"
)

// Error is a failure with a stable code: the one error type of the engine,
// its modules and transports, and the worker SDK (engine.Error and
// trine.Error are this type). A handler may return one to choose the code
// its caller sees; any other handler error arrives as handler_error.
type Error struct {
	Code    Code
	Message string
	// Stacktrace is the failing handler's stack trace, when there is one
	// and its transport carries it (gRPC and iii do, calls between
	// engines do not): a Go handler's panic, or what an iii worker sent.
	// It is passed on unchanged.
	Stacktrace string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "trine: " + string(e.Code)
	}
	return "trine: " + string(e.Code) + ": " + e.Message
}

// Is reports whether e matches target, an *Error with only a code: the
// sentinels (engine.ErrUnavailable, trine.ErrUnavailable) match every
// error of their code, whatever its message. A target with a message
// (trine.ErrClosed) is matched only by itself, which errors.Is checks
// before it calls Is.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// FromError gives err a code: an *Error anywhere in its chain is returned
// as is, context errors become deadline_exceeded or cancelled, and
// anything else becomes other, with err's text as message. A nil err
// gives nil.
func FromError(err error, other Code) *Error {
	if err == nil {
		return nil // here, so that a nil err allocates nothing: fromError's e is on the heap
	}
	return fromError(err, other)
}

func fromError(err error, other Code) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: DeadlineExceeded, Message: "deadline exceeded"}
	case errors.Is(err, context.Canceled):
		return &Error{Code: Cancelled, Message: "call cancelled"}
	default:
		return &Error{Code: other, Message: err.Error()}
	}
}
