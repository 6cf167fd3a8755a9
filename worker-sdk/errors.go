package trine

import (
	"fmt"

	"github.com/trinehq/trine/codes"
)

// Code is a stable error code; package codes holds the one list, and
// docs/reference.md says what each means.
type Code = codes.Code

// The error codes, under the names the SDK has always given them.
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

// Error is a failure with a stable code, the type the engine's errors are
// too. A handler may return one to choose the code its caller sees; any
// other handler error arrives as handler_error. Stacktrace is the failing
// handler's stack trace, when there is one: a Go handler's panic, or what
// an iii worker sent.
type Error = codes.Error

// Sentinel errors for errors.Is, one per code.
var (
	ErrFunctionNotFound    = &Error{Code: CodeFunctionNotFound}
	ErrTriggerTypeNotFound = &Error{Code: CodeTriggerTypeNotFound}
	ErrTriggerNotFound     = &Error{Code: CodeTriggerNotFound}
	ErrInvalidArgument     = &Error{Code: CodeInvalidArgument}
	ErrDeadlineExceeded    = &Error{Code: CodeDeadlineExceeded}
	ErrCancelled           = &Error{Code: CodeCancelled}
	ErrWorkerDisconnected  = &Error{Code: CodeWorkerDisconnected}
	ErrHandlerError        = &Error{Code: CodeHandlerError}
	ErrUnauthorized        = &Error{Code: CodeUnauthorized}
	ErrForbidden           = &Error{Code: CodeForbidden}
	ErrOverloaded          = &Error{Code: CodeOverloaded}
	ErrConflict            = &Error{Code: CodeConflict}
	ErrMessageTooLarge     = &Error{Code: CodeMessageTooLarge}
	ErrUnavailable         = &Error{Code: CodeUnavailable}
	ErrInternal            = &Error{Code: CodeInternal}
	ErrValueTooLarge       = &Error{Code: CodeValueTooLarge}
	ErrEnqueueError        = &Error{Code: CodeEnqueueError}
)

// ErrClosed is returned by calls on a closed Worker. It has code
// unavailable (errors.Is(ErrClosed, ErrUnavailable) holds), but no other
// unavailable error is ErrClosed.
var ErrClosed = &Error{Code: CodeUnavailable, Message: "worker closed"}

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// asError gives any error a code, the way the engine does.
func asError(err error) *Error { return codes.FromError(err, CodeHandlerError) }
