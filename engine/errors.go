package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/trinehq/trine/codes"
)

// Code is a stable error code (package codes holds the one list; the
// codes are part of the public contract, documented in docs/reference.md).
type Code = codes.Code

// The error codes, named as the engine's callers have always named them.
const (
	CodeFunctionNotFound    = codes.FunctionNotFound
	CodeTriggerTypeNotFound = codes.TriggerTypeNotFound
	CodeTriggerNotFound     = codes.TriggerNotFound
	CodeInvalidArgument     = codes.InvalidArgument
	CodeDeadlineExceeded    = codes.DeadlineExceeded
	CodeCancelled           = codes.Cancelled
	CodeWorkerDisconnected  = codes.WorkerDisconnected
	CodeHandlerError        = codes.HandlerError
	CodeUnauthorized        = codes.Unauthorized
	CodeForbidden           = codes.Forbidden
	CodeOverloaded          = codes.Overloaded
	CodeConflict            = codes.Conflict
	CodeMessageTooLarge     = codes.MessageTooLarge
	CodeUnavailable         = codes.Unavailable
	CodeInternal            = codes.Internal
	CodeValueTooLarge       = codes.ValueTooLarge
	CodeEnqueueError        = codes.EnqueueError
)

// Error is a failure with a stable code. Handlers may return one to choose the
// code their caller sees; any other error from a handler becomes handler_error.
type Error struct {
	Code    Code
	Message string
	// Stacktrace is the callee's own stack trace, when its transport
	// carries one (gRPC and iii do, calls between engines do not); the
	// engine passes it on unchanged.
	Stacktrace string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "engine: " + string(e.Code)
	}
	return "engine: " + string(e.Code) + ": " + e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, engine.ErrFunctionNotFound) works whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinel errors, one per code, for errors.Is.
var (
	ErrFunctionNotFound    = &Error{Code: CodeFunctionNotFound}
	ErrTriggerTypeNotFound = &Error{Code: CodeTriggerTypeNotFound}
	ErrTriggerNotFound     = &Error{Code: CodeTriggerNotFound}
	ErrInvalidArgument     = &Error{Code: CodeInvalidArgument}
	ErrDeadlineExceeded    = &Error{Code: CodeDeadlineExceeded}
	ErrCancelled           = &Error{Code: CodeCancelled}
	ErrWorkerDisconnected  = &Error{Code: CodeWorkerDisconnected}
	ErrHandlerError        = &Error{Code: CodeHandlerError}
	ErrForbidden           = &Error{Code: CodeForbidden}
	ErrOverloaded          = &Error{Code: CodeOverloaded}
	ErrConflict            = &Error{Code: CodeConflict}
	ErrMessageTooLarge     = &Error{Code: CodeMessageTooLarge}
	ErrUnavailable         = &Error{Code: CodeUnavailable}
	ErrInternal            = &Error{Code: CodeInternal}
	ErrValueTooLarge       = &Error{Code: CodeValueTooLarge}
	ErrEnqueueError        = &Error{Code: CodeEnqueueError}
)

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError converts any error into an *Error: an *Error anywhere in the chain
// is returned as is, context errors become deadline_exceeded or cancelled, and
// anything else becomes internal with the error text as message.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeDeadlineExceeded, Message: "deadline exceeded"}
	case errors.Is(err, context.Canceled):
		return &Error{Code: CodeCancelled, Message: "call cancelled"}
	default:
		return &Error{Code: CodeInternal, Message: err.Error()}
	}
}

// ctxError turns the reason ctx ended into an *Error naming the function.
func ctxError(ctx context.Context, functionID string) *Error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Errorf(CodeDeadlineExceeded, "%s: deadline exceeded", functionID)
	}
	if e := AsError(context.Cause(ctx)); e != nil && e.Code != CodeCancelled && e.Code != CodeInternal {
		return e
	}
	return Errorf(CodeCancelled, "%s: call cancelled", functionID)
}
