package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/trinehq/trine/codes"
)

// Code is a stable error code; package codes holds the one list, and the
// codes are part of the public contract, documented in docs/reference.md.
type Code = codes.Code

// Error is a failure with a stable code, the type the SDK's errors are
// too. Handlers may return one to choose the code their caller sees; any
// other error from a handler becomes handler_error.
type Error = codes.Error

// Sentinel errors, one per code, for errors.Is: each matches every error
// of its code, whatever the message.
var (
	ErrFunctionNotFound    = &Error{Code: codes.FunctionNotFound}
	ErrTriggerTypeNotFound = &Error{Code: codes.TriggerTypeNotFound}
	ErrTriggerNotFound     = &Error{Code: codes.TriggerNotFound}
	ErrInvalidArgument     = &Error{Code: codes.InvalidArgument}
	ErrDeadlineExceeded    = &Error{Code: codes.DeadlineExceeded}
	ErrCancelled           = &Error{Code: codes.Cancelled}
	ErrWorkerDisconnected  = &Error{Code: codes.WorkerDisconnected}
	ErrHandlerError        = &Error{Code: codes.HandlerError}
	ErrForbidden           = &Error{Code: codes.Forbidden}
	ErrOverloaded          = &Error{Code: codes.Overloaded}
	ErrConflict            = &Error{Code: codes.Conflict}
	ErrMessageTooLarge     = &Error{Code: codes.MessageTooLarge}
	ErrUnavailable         = &Error{Code: codes.Unavailable}
	ErrInternal            = &Error{Code: codes.Internal}
	ErrValueTooLarge       = &Error{Code: codes.ValueTooLarge}
	ErrEnqueueError        = &Error{Code: codes.EnqueueError}
)

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError converts any error into an *Error: an *Error anywhere in the chain
// is returned as is, context errors become deadline_exceeded or cancelled, and
// anything else becomes internal with the error text as message.
func AsError(err error) *Error { return codes.FromError(err, codes.Internal) }

// ctxError turns the reason ctx ended into an *Error naming the function.
func ctxError(ctx context.Context, functionID string) *Error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Errorf(codes.DeadlineExceeded, "%s: deadline exceeded", functionID)
	}
	if e := AsError(context.Cause(ctx)); e != nil && e.Code != codes.Cancelled && e.Code != codes.Internal {
		return e
	}
	return Errorf(codes.Cancelled, "%s: call cancelled", functionID)
}
